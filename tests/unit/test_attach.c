/* test_attach.c: the region a process counts in: shared by name across
 * processes, its own file otherwise, and what is refused. Processes are
 * forked children that attach on their own, as separate servers would. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach.h"
#include "check.h"
#include "region_files.h"
#include "store.h"

static const double bounds[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
static const double other_bounds[] = {.1, 1};

static char name[64];

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Counts `calls` of /svc/m in the named region, from a process of its own. */
static pid_t count_in_child(unsigned capacity, int calls)
{
    pid_t child = fork();
    if (child == 0) {
        struct grpcprom_header *h = attach_region(name, bounds, 11, capacity);
        enum grpcprom_overflow_reason why;
        struct grpcprom_method *m = h ? store_claim(h, GRPCPROM_SERVER, "/svc/m", 6, &why) : NULL;
        for (int i = 0; m && i < calls; i++)
            store_add(&grpcprom_region_counts(h, m, store_shard(h))->started, 1);
        _exit(m && h->method_capacity == 16 ? 0 : 1);
    }
    return child;
}

static uint64_t started(struct grpcprom_header *h)
{
    struct grpcprom_method *m = store_find(h, GRPCPROM_SERVER, "/svc/m", 6);
    struct grpcprom_totals t = {0};
    if (m)
        grpcprom_region_sum(h, m, &t);
    return t.started;
}

static void test_shared_by_name(void)
{
    struct region_file f;
    region_file_at(&f, name, 0);
    struct grpcprom_header *mine = attach_region(name, bounds, 11, 16);
    CHECK(mine != NULL);
    struct stat st;
    CHECK_INT(stat(f.path, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0600);

    /* Eight processes at once, some asking for other settings: one region,
     * the creator's settings, every call counted. */
    pid_t children[8];
    for (int i = 0; i < 8; i++)
        children[i] = count_in_child(i % 2 ? 16 : 99, 1000);
    for (int i = 0; i < 8; i++) {
        int status;
        waitpid(children[i], &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK_INT(started(mine), 8000);
    long pids[4];
    int fd = open(f.path, O_RDONLY);
    CHECK_INT(region_file_holders(fd, pids, 4), 1); /* the children are gone, this one is not */
    close(fd);
    CHECK(exists(f.path)); /* a shared region outlives its processes */
}

/* The processes created at once race to create a region nobody has yet. */
static void test_created_once(void)
{
    char saved[64];
    snprintf(saved, sizeof(saved), "%s", name);
    snprintf(name, sizeof(name), "test-race-%d", (int)getpid());
    pid_t children[6];
    for (int i = 0; i < 6; i++)
        children[i] = count_in_child(16, 500);
    for (int i = 0; i < 6; i++) {
        int status;
        waitpid(children[i], &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    struct region_file f;
    region_file_at(&f, name, 0);
    const char *why;
    size_t size;
    int fd = region_file_open(f.path, false, &why);
    struct grpcprom_header *copy = fd >= 0 ? region_file_copy(fd, &size, &why) : NULL;
    CHECK(copy != NULL);
    if (copy)
        CHECK_INT(started(copy), 3000);
    free(copy);
    close(fd);
    unlink(f.path);
    snprintf(name, sizeof(name), "%s", saved);
}

/* What is not a region of this user's is never written: counting goes on
 * in memory of the process's own. */
static void test_refused(void)
{
    char bad[64];
    snprintf(bad, sizeof(bad), "test-bad-%d", (int)getpid());
    struct region_file f;
    region_file_at(&f, bad, 0);
    int fd = open(f.path, O_CREAT | O_WRONLY, 0600);
    CHECK_INT(write(fd, "not a region", 12), 12);
    close(fd);
    struct grpcprom_header *h = attach_region(bad, bounds, 11, 16);
    CHECK(h != NULL);
    struct stat st;
    CHECK_INT(stat(f.path, &st), 0);
    CHECK_INT(st.st_size, 12);

    unlink(f.path);
    fd = open(f.path, O_CREAT | O_WRONLY, 0644);
    close(fd);
    chmod(f.path, 0644);
    h = attach_region(bad, bounds, 11, 16);
    CHECK(h != NULL);
    CHECK_INT(stat(f.path, &st), 0);
    CHECK_INT(st.st_size, 0);
    unlink(f.path);
}

/* A process's own region: there while it runs, gone after a normal exit,
 * left for grpcprom after a crash. */
static void test_own_region(void)
{
    int ready[2];
    CHECK_INT(pipe(ready), 0);
    pid_t child = fork();
    if (child == 0) {
        struct grpcprom_header *h = attach_region(NULL, other_bounds, 2, 4);
        ssize_t ignored = write(ready[1], h ? "y" : "n", 1);
        (void)ignored;
        pause();
        _exit(0);
    }
    char c = 0;
    CHECK_INT(read(ready[0], &c, 1), 1);
    CHECK_INT(c, 'y');
    struct region_file f;
    region_file_at(&f, NULL, child);
    CHECK(exists(f.path));
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    CHECK(exists(f.path)); /* killed: left for grpcprom dump */
    unlink(f.path);

    child = fork();
    if (child == 0) {
        struct grpcprom_header *h = attach_region("", other_bounds, 2, 4);
        /* a forked child of it exits first: the region stays its parent's */
        pid_t grandchild = fork();
        if (grandchild == 0)
            exit(0);
        waitpid(grandchild, NULL, 0);
        region_file_at(&f, NULL, getpid());
        int ok = h != NULL && exists(f.path);
        exit(ok ? 0 : 1); /* a normal exit: the region goes */
    }
    int status;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    region_file_at(&f, NULL, child);
    CHECK(!exists(f.path));

    /* A parent that exits before its forked workers leaves them their region. */
    int worker_pipe[2];
    CHECK_INT(pipe(worker_pipe), 0);
    child = fork();
    if (child == 0) {
        attach_region(NULL, other_bounds, 2, 4);
        if (fork() == 0) { /* the worker: lives until the test closes the pipe */
            char c;
            close(worker_pipe[1]);
            ssize_t ignored = read(worker_pipe[0], &c, 1);
            (void)ignored;
            _exit(0);
        }
        exit(0);
    }
    close(worker_pipe[0]);
    waitpid(child, &status, 0);
    region_file_at(&f, NULL, child);
    CHECK(exists(f.path));
    struct region_file copy = f;
    CHECK(!region_file_remove_if_unused(&copy)); /* the worker holds it */
    close(worker_pipe[1]);
    for (int i = 0; i < 100 && !region_file_remove_if_unused(&copy); i++)
        usleep(10000);
    CHECK(!exists(f.path));
}

/* Leftovers of killed processes are kept, the newest eight of them (these
 * are dated in the future, so that older ones on the machine go first). */
static void test_leftovers_bounded(void)
{
    struct region_file old[12];
    for (int i = 0; i < 12; i++) {
        /* pids above pid_max's default belong to nobody */
        region_file_at(&old[i], NULL, 4194400 + i);
        struct grpcprom_header plan;
        size_t size = store_plan(&plan, 2, 4);
        int fd = open(old[i].path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
        void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        store_format(base, &plan, other_bounds);
        ((struct grpcprom_header *)base)->start_time_unix_ns = INT64_MAX / 2 + i;
        munmap(base, size);
        close(fd);
    }
    pid_t child = fork();
    if (child == 0)
        _exit(attach_region(NULL, other_bounds, 2, 4) ? 0 : 1);
    waitpid(child, NULL, 0);
    for (int i = 0; i < 12; i++) {
        if (i < 4)
            CHECK(!exists(old[i].path));
        else
            CHECK(exists(old[i].path));
        unlink(old[i].path);
    }
    struct region_file f;
    region_file_at(&f, NULL, child);
    CHECK(exists(f.path)); /* _exit: no exit handlers, so it stays too */
    unlink(f.path);
}

int main(void)
{
    snprintf(name, sizeof(name), "test-attach-%d", (int)getpid());
    test_shared_by_name();
    test_created_once();
    test_refused();
    test_own_region();
    test_leftovers_bounded();
    struct region_file f;
    region_file_at(&f, name, 0);
    unlink(f.path);
    CHECK_DONE();
}
