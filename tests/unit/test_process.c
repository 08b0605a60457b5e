/* test_process.c: the process families of this very process, against what
 * the kernel says of it by other ways. */
#include <dirent.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "process.h"

/* The value of sample `name` in the text, or -1. */
static double sample(const char *text, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, field, strlen(field)) == 0)
            kb = atol(line + strlen(field) + 1);
    if (f)
        fclose(f);
    return kb;
}

int main(void)
{
    /* some CPU time and memory of our own, so that neither is 0 */
    size_t size = 8 << 20;
    volatile char *touched = malloc(size);
    for (size_t i = 0; i < size; i += 4096)
        touched[i] = 1;
    clock_t until = clock() + CLOCKS_PER_SEC / 20;
    while (clock() < until)
        ;

    struct grpcprom_buf out = {0};
    CHECK_INT(process_render(&out), 0);
    const char *text = out.data;
    static const char *const families[][3] = {
        {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter"},
        {"process_max_fds", "Maximum number of open file descriptors.", "gauge"},
        {"process_open_fds", "Number of open file descriptors.", "gauge"},
        {"process_resident_memory_bytes", "Resident memory size in bytes.", "gauge"},
        {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge"},
        {"process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge"},
        {"process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", "gauge"},
    };
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        char head[256];
        snprintf(head, sizeof(head), "# HELP %s %s\n# TYPE %s %s\n%s ", families[i][0],
                 families[i][1], families[i][0], families[i][2], families[i][0]);
        CHECK(strstr(text, head) != NULL);
    }

    double cpu = sample(text, "process_cpu_seconds_total");
    CHECK(cpu >= 0.04 && cpu < 60);
    struct rlimit files;
    getrlimit(RLIMIT_NOFILE, &files);
    CHECK_INT((long long)sample(text, "process_max_fds"), (long long)files.rlim_cur);
    long fds = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        fds += e->d_name[0] != '.';
    closedir(d);
    CHECK_INT((long long)sample(text, "process_open_fds"), fds);
    double rss = sample(text, "process_resident_memory_bytes");
    long rss_kb = status_kb("VmRSS");
    CHECK(rss >= 8 << 20 && rss > rss_kb * 1024.0 * 0.8 && rss < rss_kb * 1024.0 * 1.2);
    double vsize = sample(text, "process_virtual_memory_bytes");
    long vm_kb = status_kb("VmSize");
    CHECK(vsize > vm_kb * 1024.0 * 0.9 && vsize < vm_kb * 1024.0 * 1.1);
    double started = sample(text, "process_start_time_seconds");
    CHECK(started > (double)time(NULL) - 60 && started <= (double)time(NULL) + 1);
    CHECK(strstr(text, "\nprocess_virtual_memory_max_bytes 1.8446744073709552e+19\n") != NULL ||
          sample(text, "process_virtual_memory_max_bytes") > 0);
    grpcprom_buf_free(&out);
    free((void *)touched);
    CHECK_DONE();
}
