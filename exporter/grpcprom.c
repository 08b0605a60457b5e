/* grpcprom.c: the grpcprom command: runs a program with the shim, and lists,
 * prints, serves and cleans up the regions on this machine. Exit codes: 0
 * done, 1 the region or the program could not be had (said in one line on
 * stderr), 2 a usage error; `run` exits as the program does. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "options.h"
#include "page.h"
#include "region_files.h"
#include "render.h"

#define SHIM_NAME "libgrpcprom.so"

static const char usage_text[] =
    "usage: grpcprom run [--listen ADDR] [--shm NAME] [--] COMMAND [ARG...]\n"
    "       grpcprom ls\n"
    "       grpcprom dump [PID|NAME]\n"
    "       grpcprom serve --shm NAME [--listen ADDR]\n"
    "       grpcprom gc\n"
    "\n"
    "  run    runs COMMAND with libgrpcprom.so preloaded: a gRPC server it starts\n"
    "         serves its metrics on ADDR (GRPCPROM_LISTEN, default 0.0.0.0:9091,\n"
    "         or none), counted in the region NAME when given (GRPCPROM_SHM)\n"
    "  ls     lists the regions on this machine: name, processes, whether one is\n"
    "         still running, methods and calls\n"
    "  dump   prints the metrics page of a region, read from shared memory: of\n"
    "         process PID, or the region NAME (the only region when none is named)\n"
    "  serve  serves the region NAME's page on ADDR until stopped, for servers run\n"
    "         with GRPCPROM_LISTEN=none; other GRPCPROM_* page settings apply\n"
    "  gc     removes the regions no running process uses (root: anyone's)\n"
    "\n"
    "Exit status: 0 done, 1 the region or command could not be had, 2 usage.\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "grpcprom: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (grpcprom --help tells more)\n");
    return 2;
}

/* True when the subcommand's own options ask for help: those before its
 * first operand (`run CMD --help` is the command's). */
static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0 && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
        if (strcmp(argv[i], "--listen") == 0 || strcmp(argv[i], "--shm") == 0)
            i++; /* its value */
    }
    return false;
}

/* Options shared by run and serve; getopt_long, stopping at the first
 * operand so that the command's own options stay its own. */
static int parse_page_options(int argc, char **argv, const char **listen, const char **shm)
{
    static const struct option longs[] = {{"listen", required_argument, NULL, 'l'},
                                          {"shm", required_argument, NULL, 's'},
                                          {NULL, 0, NULL, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+", longs, NULL)) != -1) {
        const char *problem = NULL;
        if (c == 'l' && (problem = options_check("GRPCPROM_LISTEN", optarg)) == NULL)
            *listen = optarg;
        else if (c == 's' && (problem = options_check("GRPCPROM_SHM", optarg)) == NULL)
            *shm = optarg;
        else if (problem)
            return usage_error("%s", problem);
        else
            return usage_error("%s: unknown option", argv[optind - 1]);
    }
    return 0;
}

/* The shim beside this program (installed), or in the build tree beside it,
 * or where it was installed. */
static bool find_shim(char out[PATH_MAX])
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        *slash = '\0';
        static const char *const beside[] = {"/" SHIM_NAME, "/../shim/" SHIM_NAME,
                                             "/../lib/" SHIM_NAME};
        for (size_t i = 0; i < sizeof(beside) / sizeof(beside[0]); i++) {
            char candidate[PATH_MAX + 32];
            snprintf(candidate, sizeof(candidate), "%s%s", self, beside[i]);
            if (access(candidate, R_OK) == 0 && realpath(candidate, out))
                return true;
        }
    }
    return access(GRPCPROM_LIBDIR "/" SHIM_NAME, R_OK) == 0 &&
           realpath(GRPCPROM_LIBDIR "/" SHIM_NAME, out);
}

static int cmd_run(int argc, char **argv)
{
    const char *listen = NULL, *shm = NULL;
    int rc = parse_page_options(argc, argv, &listen, &shm);
    if (rc != 0)
        return rc;
    if (optind >= argc)
        return usage_error("run: which command%s?", "");
    char shim[PATH_MAX];
    if (!find_shim(shim)) {
        fprintf(stderr, "grpcprom: cannot find %s beside this program or in %s\n", SHIM_NAME,
                GRPCPROM_LIBDIR);
        return 1;
    }
    const char *before = getenv("LD_PRELOAD");
    if (before == NULL || strstr(before, SHIM_NAME) == NULL) {
        size_t room = strlen(shim) + (before ? strlen(before) : 0) + 2;
        char *preload = malloc(room);
        if (preload == NULL)
            return 1;
        snprintf(preload, room, "%s%s%s", before && before[0] ? before : "",
                 before && before[0] ? ":" : "", shim);
        setenv("LD_PRELOAD", preload, 1);
        free(preload);
    }
    if (listen)
        setenv("GRPCPROM_LISTEN", listen, 1);
    if (shm)
        setenv("GRPCPROM_SHM", shm, 1);
    execvp(argv[optind], argv + optind);
    int err = errno;
    fprintf(stderr, "grpcprom: cannot run %s: %s\n", argv[optind], strerror(err));
    return err == ENOENT ? 127 : 126;
}

/* What a region holds, read from a checked copy. */
struct region_summary {
    uint32_t methods;
    uint64_t calls;
};

static void summarize(const struct grpcprom_header *h, struct region_summary *s)
{
    s->methods = 0;
    s->calls = 0;
    const struct grpcprom_method *slots = grpcprom_region_methods(h);
    uint32_t used = grpcprom_region_methods_used(h);
    for (uint32_t i = 0; i < used + GRPCPROM_OVERFLOW_SLOTS; i++) {
        const struct grpcprom_method *m = i < used ? &slots[i] : &slots[h->method_capacity + i - used];
        if (atomic_load_explicit(&m->state, memory_order_acquire) != GRPCPROM_SLOT_READY)
            continue;
        struct grpcprom_totals t;
        grpcprom_region_sum(h, m, &t);
        s->calls += t.started;
        s->methods += i < used;
    }
}

static void refused(const char *path, const char *why)
{
    fprintf(stderr, "grpcprom: %s: refused: %s\n", path, why);
}

static int list_one(const struct region_file *f, void *ctx)
{
    (void)ctx;
    const char *why;
    int fd = region_file_open(f->path, false, &why);
    if (fd < 0) {
        if (errno != ENOENT) /* removed since the directory was read: not there */
            refused(f->path, why);
        return 0;
    }
    size_t size;
    struct grpcprom_header *h = region_file_copy(fd, &size, &why);
    long pids[8];
    int holders = region_file_holders(fd, pids, 8);
    close(fd);
    if (h == NULL) {
        refused(f->path, why);
        return 0;
    }
    char pid_text[96] = "-";
    size_t len = 0;
    if (f->pid)
        snprintf(pid_text, sizeof(pid_text), "%ld", f->pid);
    else
        for (int i = 0; i < holders && i < 8; i++)
            len += (size_t)snprintf(pid_text + len, sizeof(pid_text) - len, "%s%ld", i ? "," : "",
                                    pids[i]);
    if (holders > 8)
        snprintf(pid_text + len, sizeof(pid_text) - len, ",...");
    struct region_summary s;
    summarize(h, &s);
    free(h);
    printf("%-24s %-16s %-5s %7u %12llu\n", f->pid ? "-" : f->name, pid_text,
           holders > 0 ? "yes" : "no", s.methods, (unsigned long long)s.calls);
    return 0;
}

static int cmd_ls(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return usage_error("ls takes no arguments%s", "");
    printf("%-24s %-16s %-5s %7s %12s\n", "NAME", "PID", "ALIVE", "METHODS", "CALLS");
    int rc = region_files_each(list_one, NULL);
    if (rc < 0) {
        fprintf(stderr, "grpcprom: cannot read %s: %s\n", REGION_DIR, strerror(-rc));
        return 1;
    }
    return 0;
}

/* Which region `dump` means. */
struct region_search {
    const char *arg;   /* a PID, a NAME or NULL */
    long pid;
    struct region_file found;
    int matches;
};

static int match_region(const struct region_file *f, void *ctx)
{
    struct region_search *s = ctx;
    bool match = s->arg == NULL;
    if (s->pid && !match) { /* a process's own region, or the shared one it holds */
        long pids[64];
        int fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        int n = fd >= 0 ? region_file_holders(fd, pids, 64) : 0;
        if (fd >= 0)
            close(fd);
        match = f->pid == s->pid;
        for (int i = 0; i < n && i < 64 && !match; i++)
            match = pids[i] == s->pid;
    } else if (!match) {
        match = f->pid == 0 && strcmp(f->name, s->arg) == 0;
    }
    if (match && (s->matches++ == 0 || f->pid == s->pid))
        s->found = *f;
    return 0;
}

static int cmd_dump(int argc, char **argv)
{
    if (argc > 2)
        return usage_error("dump takes one PID or NAME%s", "");
    struct region_search s = {.arg = argc == 2 ? argv[1] : NULL};
    if (s.arg) {
        char *end;
        long pid = strtol(s.arg, &end, 10);
        if (*end == '\0' && pid > 0)
            s.pid = pid;
        else if (!region_name_ok(s.arg))
            return usage_error("dump %s: neither a PID nor a region name", s.arg);
    }
    int rc = region_files_each(match_region, &s);
    if (rc < 0) {
        fprintf(stderr, "grpcprom: cannot read %s: %s\n", REGION_DIR, strerror(-rc));
        return 1;
    }
    if (s.matches == 0) {
        fprintf(stderr, "grpcprom: no region %s%s (grpcprom ls lists them)\n",
                s.arg ? "of " : "on this machine", s.arg ? s.arg : "");
        return 1;
    }
    if (s.arg == NULL && s.matches > 1) {
        fprintf(stderr, "grpcprom: %d regions: name one, by PID or NAME (grpcprom ls lists them)\n",
                s.matches);
        return 2;
    }
    const char *why;
    size_t size;
    int fd = region_file_open(s.found.path, false, &why);
    struct grpcprom_header *h = fd >= 0 ? region_file_copy(fd, &size, &why) : NULL;
    if (fd >= 0)
        close(fd);
    if (h == NULL) {
        refused(s.found.path, why);
        return 1;
    }
    struct grpcprom_buf page = {0};
    rc = grpcprom_render(h, &page);
    free(h);
    if (rc == 0)
        fwrite(page.data, 1, page.len, stdout);
    grpcprom_buf_free(&page);
    if (rc != 0 || fflush(stdout) != 0) {
        fprintf(stderr, "grpcprom: cannot print the page: %s\n", strerror(rc ? -rc : errno));
        return 1;
    }
    return 0;
}

/* Maps region `name` for reading, waiting for it to be created: a page
 * started beside its servers may start first. It holds a lock on it, so
 * that `grpcprom gc` leaves it while it is served. */
static const struct grpcprom_header *map_for_serving(const char *name)
{
    struct region_file f;
    region_file_at(&f, name, 0);
    bool said = false;
    for (;;) {
        const char *why;
        struct grpcprom_header *h;
        switch (region_file_attach(f.path, false, &h, &why)) {
        case REGION_ATTACHED:
            return h;
        case REGION_UNUSABLE:
            refused(f.path, why);
            return NULL;
        case REGION_MISSING:
            if (!said)
                fprintf(stderr, "grpcprom: waiting for region %s to be created\n", name);
            said = true;
            break;
        case REGION_REMOVED: /* a `grpcprom gc` is removing it: the next one is the one to serve */
            break;
        }
        sleep(1);
    }
}

static const char *lookup_env(const char *name)
{
    return getenv(name);
}

static int cmd_serve(int argc, char **argv)
{
    const char *listen = NULL, *shm = NULL;
    int rc = parse_page_options(argc, argv, &listen, &shm);
    if (rc != 0)
        return rc;
    if (optind < argc)
        return usage_error("serve: unexpected %s", argv[optind]);
    if (listen)
        setenv("GRPCPROM_LISTEN", listen, 1);
    struct options options;
    options_load(&options, lookup_env);
    if (shm == NULL)
        shm = options.shm[0] ? options.shm : NULL;
    if (shm == NULL)
        return usage_error("serve: which region (--shm NAME)?%s", "");
    if (options.listen[0] == '\0')
        return usage_error("serve: GRPCPROM_LISTEN=none leaves nothing to serve%s", "");
    const struct grpcprom_header *h = map_for_serving(shm);
    if (h == NULL)
        return 1;
    /* From here a stop signal ends the wait below, and exit stops the page. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    struct page_access access;
    options_page_access(&options, &access);
    log_set_level(options.log_level < LOG_INFO ? LOG_INFO : options.log_level);
    if (page_start(options.listen, h, &access, NULL) != 0)
        return 1;
    int signal_number;
    sigwait(&stop, &signal_number);
    return 0;
}

static int remove_unused(const struct region_file *f, void *ctx)
{
    (void)ctx;
    if (region_file_remove_if_unused(f))
        printf("removed %s\n", f->path);
    return 0;
}

static int cmd_gc(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return usage_error("gc takes no arguments%s", "");
    int rc = region_files_each(remove_unused, NULL);
    if (rc < 0) {
        fprintf(stderr, "grpcprom: cannot read %s: %s\n", REGION_DIR, strerror(-rc));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
    } commands[] = {{"run", cmd_run}, {"ls", cmd_ls}, {"dump", cmd_dump},
                    {"serve", cmd_serve}, {"gc", cmd_gc}};
    if (argc < 2)
        return usage_error("which command?%s", "");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage_text, stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        if (wants_help(argc - 1, argv + 1)) {
            fputs(usage_text, stdout);
            return 0;
        }
        return commands[i].run(argc - 1, argv + 1);
    }
    return usage_error("%s: no such command", argv[1]);
}
