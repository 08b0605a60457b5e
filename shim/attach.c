/* attach.c: finds or creates the region file this process counts in (see
 * region_files.h for how files are named, locked and published). Runs once,
 * when the process becomes a gRPC server; nothing here is on the RPC path. */
#include "attach.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "region_files.h"
#include "store.h"

/* Per-process regions of processes that are gone are kept for `grpcprom`
 * to read, the newest of them only: a server stopped by a signal leaves its
 * region each time it is restarted. */
#define LEFTOVERS_KEPT 8
#define ATTACH_ATTEMPTS 100 /* each waits 1 ms for a `grpcprom gc` to finish */

static struct region_file own;      /* this process's own region file, if it made one */
static int own_fd = -1;
static pid_t own_pid;

/* True when a child of this process is running, or when that cannot be
 * told: a forked worker may still count in the region. (The region's lock
 * cannot tell: the mapping, which stays to the end, holds it too.) */
static bool has_children(void)
{
    DIR *tasks = opendir("/proc/self/task");
    if (tasks == NULL)
        return true;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(tasks)) != NULL) {
        char path[64], c;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/children", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        found = fd < 0 || read(fd, &c, 1) != 0;
        if (fd >= 0)
            close(fd);
    }
    closedir(tasks);
    return found;
}

/* A normal exit removes the process's own region, unless forked children
 * may still count in it: then it stays, for `grpcprom gc` once they are
 * gone. A forked child runs the same exit handlers, and leaves its
 * parent's region alone. */
static void remove_own_region(void)
{
    if (getpid() == own_pid && own_fd >= 0 && !has_children() && region_file_is(own.path, own_fd))
        unlink(own.path);
}

/* A region file, formatted for these settings under a temporary name, then
 * linked as `path`: fd >= 0 and *base on success; -1 with errno EEXIST when
 * another process linked it first. The file's pages are allocated up front:
 * a full /dev/shm then fails here, not with SIGBUS on some later count. */
static int create_file(const char *path, const struct grpcprom_header *plan, const double *bounds,
                       void **base)
{
    char tmp[REGION_PATH_MAX];
    static unsigned made;
    snprintf(tmp, sizeof(tmp), REGION_DIR "/.grpcprom.tmp.%ld.%u", (long)getpid(), made++);
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int err = fallocate(fd, 0, 0, (off_t)plan->region_size);
    void *mem = MAP_FAILED;
    if (err == 0) {
        mem = mmap(NULL, plan->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        err = mem == MAP_FAILED ? -1 : 0;
    }
    if (err == 0) {
        store_format(mem, plan, bounds);
        err = flock(fd, LOCK_SH | LOCK_NB);
    }
    if (err == 0)
        err = link(tmp, path);
    int saved = errno;
    unlink(tmp);
    if (err == 0) {
        *base = mem;
        return fd;
    }
    if (mem != MAP_FAILED)
        munmap(mem, plan->region_size);
    close(fd);
    errno = saved;
    return -1;
}

static bool same_settings(const struct grpcprom_header *h, const double *bounds,
                          unsigned bucket_count, unsigned method_capacity)
{
    if (h->bucket_count != bucket_count || h->method_capacity != method_capacity)
        return false;
    for (unsigned i = 0; i < bucket_count; i++)
        if (h->bucket_bounds[i] != bounds[i])
            return false;
    return true;
}

struct leftover {
    struct region_file file;
    int64_t start_ns;
};

struct leftovers {
    struct leftover newest[LEFTOVERS_KEPT + 1]; /* by start time, newest first */
    unsigned count;
};

static int note_leftover(const struct region_file *f, void *ctx)
{
    struct leftovers *l = ctx;
    struct leftover item = {.file = *f};
    if (f->pid == 0 || f->pid == own_pid || process_alive(f->pid))
        return 0;
    struct grpcprom_header h;
    uid_t owner;
    item.start_ns = region_file_header(f, &h, &owner) ? h.start_time_unix_ns : 0;
    unsigned at = l->count;
    while (at > 0 && l->newest[at - 1].start_ns < item.start_ns) {
        l->newest[at] = l->newest[at - 1];
        at--;
    }
    l->newest[at] = item;
    if (l->count <= LEFTOVERS_KEPT)
        l->count++;
    if (l->count == LEFTOVERS_KEPT + 1) { /* the oldest of them goes */
        region_file_remove_if_unused(&l->newest[LEFTOVERS_KEPT].file);
        l->count = LEFTOVERS_KEPT;
    }
    return 0;
}

static void fallback_said(const char *path, const char *why)
{
    log_msg(LOG_WARN, "cannot use the region file %s: %s; counting in memory of this process "
                      "alone, which grpcprom cannot read from outside", path, why);
}

struct grpcprom_header *attach_region(const char *name, const double *bounds,
                                      unsigned bucket_count, unsigned method_capacity)
{
    struct grpcprom_header plan;
    if (store_plan(&plan, bucket_count, method_capacity) == 0)
        return NULL;
    struct region_file f;
    own_pid = getpid();
    region_file_at(&f, name, own_pid);
    if (f.pid) { /* a leftover of a process this pid had before is nobody's */
        region_file_remove_if_unused(&f);
        struct leftovers old = {.count = 0};
        region_files_each(note_leftover, &old);
    }
    for (int attempt = 0; attempt < ATTACH_ATTEMPTS; attempt++) {
        if (f.pid == 0) {
            struct grpcprom_header *h = NULL;
            const char *why = NULL;
            enum region_attach found = region_file_attach(f.path, true, &h, &why);
            if (found == REGION_ATTACHED) {
                if (!same_settings(h, bounds, bucket_count, method_capacity))
                    log_msg(LOG_WARN, "GRPCPROM_SHM=%s was created with other GRPCPROM_BUCKETS or "
                                      "GRPCPROM_MAX_METHODS: the region's settings are used", name);
                return h;
            }
            if (found == REGION_UNUSABLE) {
                fallback_said(f.path, why);
                return store_create(bounds, bucket_count, method_capacity);
            }
        }
        void *base = NULL;
        int fd = create_file(f.path, &plan, bounds, &base);
        if (fd >= 0) { /* kept open for good: its lock says the region is in use */
            if (f.pid) {
                own = f;
                own_fd = fd;
                atexit(remove_own_region);
            }
            return base;
        }
        if (errno != EEXIST || f.pid) {
            fallback_said(f.path, strerror(errno));
            return store_create(bounds, bucket_count, method_capacity);
        }
        /* Another process linked it first, or a `grpcprom gc` is removing it: again. */
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    fallback_said(f.path, "it kept being removed while it was opened");
    return store_create(bounds, bucket_count, method_capacity);
}

void attach_page_bound(struct grpcprom_header *region, const char *listen)
{
    snprintf(region->page_listen, sizeof(region->page_listen), "%s", listen);
    atomic_store_explicit(&region->page_pid, (int32_t)getpid(), memory_order_release);
}

struct page_search {
    const char *listen;
    long pid;
    char name[REGION_NAME_MAX + 1];
};

static int find_page_server(const struct region_file *f, void *ctx)
{
    struct page_search *s = ctx;
    struct grpcprom_header h;
    uid_t owner;
    /* only this user's regions: another user's header could name anyone */
    if (region_file_header(f, &h, &owner) && owner == geteuid() && h.page_pid > 0 &&
        h.page_pid != getpid() && process_alive(h.page_pid) &&
        strncmp(h.page_listen, s->listen, sizeof(h.page_listen)) == 0) {
        s->pid = h.page_pid;
        snprintf(s->name, sizeof(s->name), "%s", f->name);
    }
    return s->pid != 0;
}

const char *attach_why_taken(const struct grpcprom_header *region, const char *listen,
                             bool *sibling)
{
    static char hint[256];
    int32_t server = atomic_load_explicit(&region->page_pid, memory_order_acquire);
    *sibling = false;
    if (server > 0 && server != getpid() && process_alive(server) &&
        strncmp(region->page_listen, listen, sizeof(region->page_listen)) == 0) {
        snprintf(hint, sizeof(hint), "process %d serves it for the region this process counts in "
                 "too; this one takes the page over when that one stops", (int)server);
        *sibling = true;
        return hint;
    }
    struct page_search s = {.listen = listen};
    if (region_files_each(find_page_server, &s) <= 0)
        return NULL;
    snprintf(hint, sizeof(hint), "process %ld serves it for a region of its own%s%s; if it is "
             "another worker of this server, set the same GRPCPROM_SHM=name in every worker to "
             "count them in one region and serve their sum on one page",
             s.pid, s.name[0] ? " named " : "", s.name);
    return hint;
}
