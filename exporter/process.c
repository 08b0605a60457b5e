/* process.c: reads /proc/self as client_golang's process collector does
 * (through procfs), at scrape time: nothing here runs on an RPC's path. */
#include "process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The fields of /proc/self/stat after the command's closing parenthesis
 * (field 3, the state, is fields[0]); false when it cannot be read. */
static bool read_stat(unsigned long long *fields, int count)
{
    char text[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return false;
    text[n] = '\0';
    char *p = strrchr(text, ')');
    if (p == NULL || p[1] != ' ')
        return false;
    p += 2;
    for (int i = 0; i < count; i++) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            return false;
        fields[i] = i == 0 ? 0 : strtoull(p, NULL, 10); /* the state is a letter */
        while (*p && *p != ' ')
            p++;
    }
    return true;
}

/* The boot time in seconds since the epoch ("btime" of /proc/stat), or 0. */
static unsigned long long boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[256];
    unsigned long long btime = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "btime %llu", &btime) == 1)
            break;
    if (f)
        fclose(f);
    return btime;
}

/* Entries of /proc/self/fd, the one this reading opens included, as
 * procfs counts them; -1 when it cannot be read. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void family(struct grpcprom_buf *out, const char *name, const char *help, const char *type,
                   double value)
{
    char number[32];
    grpcprom_format_double(number, value);
    grpcprom_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, type, name,
                        number);
}

/* A limit as procfs reads it from /proc/self/limits: "unlimited" is the
 * largest uint64. */
static double limit_value(rlim_t v)
{
    return v == RLIM_INFINITY ? (double)UINT64_MAX : (double)v;
}

int process_render(struct grpcprom_buf *out)
{
    size_t before = out->len;
    /* state(3) ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24) */
    unsigned long long stat[22];
    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    bool have_stat = read_stat(stat, 22) && ticks > 0 && page > 0;
    if (have_stat)
        family(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
               "counter", (double)(stat[11] + stat[12]) / (double)ticks);
    struct rlimit files, space;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0)
        family(out, "process_max_fds", "Maximum number of open file descriptors.", "gauge",
               limit_value(files.rlim_cur));
    long fds = open_fds();
    if (fds >= 0)
        family(out, "process_open_fds", "Number of open file descriptors.", "gauge", (double)fds);
    unsigned long long btime = boot_time();
    if (have_stat) {
        family(out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
               (double)stat[21] * (double)page);
        if (btime > 0)
            family(out, "process_start_time_seconds",
                   "Start time of the process since unix epoch in seconds.", "gauge",
                   (double)btime + (double)stat[19] / (double)ticks);
        family(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
               (double)stat[20]);
    }
    if (getrlimit(RLIMIT_AS, &space) == 0)
        family(out, "process_virtual_memory_max_bytes",
               "Maximum amount of virtual memory available in bytes.", "gauge",
               limit_value(space.rlim_cur));
    if (out->failed) {
        out->len = before;
        return -ENOMEM;
    }
    return 0;
}
