/* test_region_files.c: region file names, the checks before a region file
 * is trusted, copies for reading, and who holds a region. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "region_files.h"
#include "store.h"

static const double bounds[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

static void test_names(void)
{
    CHECK(region_name_ok("orders"));
    CHECK(region_name_ok("a.b-c_1"));
    char longest[65];
    memset(longest, 'x', 64);
    longest[64] = '\0';
    CHECK(region_name_ok(longest));
    static const char *const bad[] = {"", ".hidden", "a/b", "a b", "..", "\xc3\xbc", "a\nb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!region_name_ok(bad[i]));
    char too_long[66];
    memset(too_long, 'x', 65);
    too_long[65] = '\0';
    CHECK(!region_name_ok(too_long));

    struct region_file f;
    region_file_at(&f, "orders", 7);
    CHECK_STR(f.path, "/dev/shm/grpcprom.name.orders");
    CHECK_STR(f.name, "orders");
    CHECK_INT(f.pid, 0);
    region_file_at(&f, "", 1234);
    CHECK_STR(f.path, "/dev/shm/grpcprom.pid.1234");
    CHECK_STR(f.name, "");
    CHECK_INT(f.pid, 1234);
}

/* A region file at `path`, as a process would make it; the fd, kept open. */
static int make_region(const char *path, unsigned capacity)
{
    struct grpcprom_header plan;
    size_t size = store_plan(&plan, 11, capacity);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
    char *data = calloc(1, size + 64);
    char *aligned = data + (64 - (uintptr_t)data % 64) % 64;
    store_format(aligned, &plan, bounds);
    CHECK_INT(pwrite(fd, aligned, size, 0), (long long)size);
    free(data);
    return fd;
}

struct seen {
    char want_named[80];
    long want_pid;
    int named, pid, others;
};

static int note(const struct region_file *f, void *ctx)
{
    struct seen *s = ctx;
    if (strcmp(f->name, s->want_named) == 0 && f->pid == 0)
        s->named++;
    else if (f->pid == s->want_pid && f->name[0] == '\0')
        s->pid++;
    else if (f->name[0] == '.' || (f->pid == 0 && f->name[0] == '\0'))
        s->others++; /* what a decoy would have been read as (other regions may be there too) */
    return 0;
}

static void test_listing(void)
{
    struct seen s = {.want_pid = 4000000 + getpid() % 100000};
    snprintf(s.want_named, sizeof(s.want_named), "test-listing-%d", (int)getpid());
    struct region_file named, own;
    region_file_at(&named, s.want_named, 0);
    region_file_at(&own, NULL, s.want_pid);
    /* held, as a process counting in them holds them: no other test's
     * clean-up of leftovers removes them meanwhile */
    int held[2] = {make_region(named.path, 4), make_region(own.path, 4)};
    CHECK(flock(held[0], LOCK_SH) == 0 && flock(held[1], LOCK_SH) == 0);
    /* not regions: a temporary, and names that only look like them */
    static const char *const decoys[] = {"/dev/shm/.grpcprom.tmp.1.2", "/dev/shm/grpcprom.name..x",
                                         "/dev/shm/grpcprom.pid.0x12"};
    for (size_t i = 0; i < 3; i++)
        close(open(decoys[i], O_CREAT | O_WRONLY, 0600));
    CHECK_INT(region_files_each(note, &s), 0);
    CHECK_INT(s.named, 1);
    CHECK_INT(s.pid, 1);
    CHECK_INT(s.others, 0);
    for (size_t i = 0; i < 3; i++)
        unlink(decoys[i]);
    unlink(named.path);
    unlink(own.path);
    close(held[0]);
    close(held[1]);
}

static void test_open_checks(void)
{
    char path[96], link_path[112];
    snprintf(path, sizeof(path), "/dev/shm/grpcprom.name.test-open-%d", (int)getpid());
    snprintf(link_path, sizeof(link_path), "%s-link", path);
    const char *why = NULL;
    int fd = make_region(path, 4);
    close(fd);
    fd = region_file_open(path, true, &why);
    CHECK(fd >= 0);
    close(fd);

    /* Readable by others: not for writing into, still for reading. */
    chmod(path, 0644);
    CHECK_INT(region_file_open(path, true, &why), -1);
    CHECK_STR(why, "other users may open it (its mode is not 0600)");
    fd = region_file_open(path, false, &why);
    CHECK(fd >= 0);
    close(fd);

    /* A link planted under a region's name is never followed. */
    CHECK_INT(symlink(path, link_path), 0);
    CHECK_INT(region_file_open(link_path, false, &why), -1);
    CHECK_STR(why, "it is a symbolic link");
    unlink(link_path);
    CHECK_INT(mkdir(link_path, 0700), 0);
    CHECK_INT(region_file_open(link_path, false, &why), -1);
    CHECK_STR(why, "it is not a regular file");
    rmdir(link_path);

    /* Another user's file: refused for writing, even to root; and for
     * reading to anyone but root. */
    CHECK_INT(chown(path, 65534, 65534), 0);
    chmod(path, 0600);
    CHECK_INT(region_file_open(path, true, &why), -1);
    CHECK_STR(why, "it belongs to another user");
    if (geteuid() == 0) {
        fd = region_file_open(path, false, &why);
        CHECK(fd >= 0);
        close(fd);
        chmod(path, 0644);
        pid_t child = fork();
        if (child == 0) {
            const char *child_why = "";
            int ok = setegid(65533) == 0 && seteuid(65533) == 0 &&
                     region_file_open(path, false, &child_why) == -1 &&
                     strcmp(child_why, "it belongs to another user") == 0;
            _exit(ok ? 0 : 1);
        }
        int status;
        waitpid(child, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    unlink(path);
    CHECK_INT(region_file_open(path, false, &why), -1);
    CHECK_INT(errno, ENOENT);
}

static void test_header_checks_and_copy(void)
{
    char path[96];
    snprintf(path, sizeof(path), "/dev/shm/grpcprom.name.test-copy-%d", (int)getpid());
    int fd = make_region(path, 8);
    const char *why = NULL;
    size_t size = 0;
    struct grpcprom_header *copy = region_file_copy(fd, &size, &why);
    CHECK(copy != NULL);
    if (copy) {
        CHECK_INT(copy->method_capacity, 8);
        CHECK_INT(size, copy->region_size);
        free(copy);
    }
    struct grpcprom_header h;
    CHECK_INT(pread(fd, &h, sizeof(h), 0), sizeof(h));

    struct grpcprom_header bad = h;
    memcpy(bad.magic, "NOTMAGIC", 8);
    CHECK_INT(region_file_check(&bad, h.region_size, &why), -1);
    CHECK_STR(why, "it is not a grpcprom region (no magic)");
    bad = h;
    bad.layout_version = GRPCPROM_LAYOUT_VERSION + 1;
    CHECK_INT(region_file_check(&bad, h.region_size, &why), -1);
    CHECK_STR(why, "it was made by another version of grpcprom (its layout differs)");
    bad = h;
    bad.method_capacity = 1000000;
    CHECK_INT(region_file_check(&bad, h.region_size, &why), -1);
    CHECK_STR(why, "its header does not agree with its size: it is damaged");
    CHECK_INT(region_file_check(&h, h.region_size - 1, &why), -1);
    CHECK_STR(why, "its header does not agree with its size: it is damaged");

    /* A file cut short after its header: refused, never read past its end. */
    CHECK_INT(ftruncate(fd, (off_t)h.region_size / 2), 0);
    CHECK(region_file_copy(fd, &size, &why) == NULL);
    CHECK_STR(why, "its header does not agree with its size: it is damaged");
    CHECK_INT(ftruncate(fd, 100), 0);
    CHECK(region_file_copy(fd, &size, &why) == NULL);
    CHECK_STR(why, "it is too small to be a grpcprom region");
    close(fd);
    unlink(path);
}

static void test_holders(void)
{
    char path[96];
    snprintf(path, sizeof(path), "/dev/shm/grpcprom.name.test-holders-%d", (int)getpid());
    int fd = make_region(path, 4);
    long pids[4] = {0};
    CHECK_INT(region_file_holders(fd, pids, 4), 0);
    CHECK_INT(flock(fd, LOCK_SH), 0);
    CHECK_INT(region_file_holders(fd, pids, 4), 1);
    CHECK_INT(pids[0], getpid());

    /* A process with a lock of its own is one more holder. */
    int ready[2], done[2];
    CHECK_INT(pipe(ready), 0);
    CHECK_INT(pipe(done), 0);
    pid_t other = fork();
    if (other == 0) {
        int own = open(path, O_RDONLY);
        char c = flock(own, LOCK_SH) == 0 ? 'y' : 'n';
        ssize_t ignored = write(ready[1], &c, 1);
        ignored = read(done[0], &c, 1);
        (void)ignored;
        _exit(0);
    }
    char c = 0;
    CHECK_INT(read(ready[0], &c, 1), 1);
    CHECK_INT(c, 'y');
    CHECK_INT(region_file_holders(fd, pids, 4), 2);
    CHECK(pids[0] == other || pids[1] == other);
    /* `grpcprom gc` cannot take it while anyone holds it. */
    int gc = open(path, O_RDONLY);
    CHECK_INT(flock(gc, LOCK_EX | LOCK_NB), -1);
    CHECK_INT(write(done[1], "x", 1), 1);
    waitpid(other, NULL, 0);
    CHECK_INT(region_file_holders(fd, pids, 4), 1);
    flock(fd, LOCK_UN);
    CHECK_INT(region_file_holders(fd, pids, 4), 0);
    CHECK_INT(flock(gc, LOCK_EX | LOCK_NB), 0);
    close(gc);
    close(fd);
    unlink(path);
}

int main(void)
{
    test_names();
    test_listing();
    test_open_checks();
    test_header_checks_and_copy();
    test_holders();
    CHECK_DONE();
}
