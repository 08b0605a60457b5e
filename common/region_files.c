/* region_files.c: naming, finding, checking and reading region files. */
#include "region_files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define NAMED_PREFIX "grpcprom.name."
#define PID_PREFIX "grpcprom.pid."

bool region_name_ok(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > REGION_NAME_MAX || name[0] == '.')
        return false;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == len;
}

void region_file_at(struct region_file *f, const char *name, long pid)
{
    memset(f, 0, sizeof(*f));
    if (name && name[0]) {
        snprintf(f->name, sizeof(f->name), "%s", name);
        snprintf(f->path, sizeof(f->path), REGION_DIR "/" NAMED_PREFIX "%s", f->name);
    } else {
        f->pid = pid;
        snprintf(f->path, sizeof(f->path), REGION_DIR "/" PID_PREFIX "%ld", pid);
    }
}

/* What a directory entry's name says, or false when it is no region. */
static bool parse_entry(const char *entry, struct region_file *f)
{
    if (strncmp(entry, NAMED_PREFIX, strlen(NAMED_PREFIX)) == 0) {
        const char *name = entry + strlen(NAMED_PREFIX);
        if (!region_name_ok(name))
            return false;
        region_file_at(f, name, 0);
        return true;
    }
    if (strncmp(entry, PID_PREFIX, strlen(PID_PREFIX)) == 0) {
        const char *digits = entry + strlen(PID_PREFIX);
        char *end;
        long pid = strtol(digits, &end, 10);
        if (*digits < '1' || *digits > '9' || *end != '\0' || pid <= 0)
            return false;
        region_file_at(f, NULL, pid);
        return true;
    }
    return false;
}

int region_files_each(int (*fn)(const struct region_file *f, void *ctx), void *ctx)
{
    DIR *dir = opendir(REGION_DIR);
    if (dir == NULL)
        return -errno;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(dir)) != NULL) {
        struct region_file f;
        if (parse_entry(e->d_name, &f))
            rc = fn(&f, ctx);
    }
    closedir(dir);
    return rc;
}

int region_file_holders(int fd, long *pids, int max)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    FILE *locks = fopen("/proc/locks", "re");
    if (locks == NULL)
        return -errno;
    char line[256];
    int count = 0;
    while (fgets(line, sizeof(line), locks)) {
        /* "1: FLOCK  ADVISORY  READ  1234 00:1a:5678 0 EOF"; " -> " lines wait */
        char kind[16];
        long pid;
        unsigned maj, min;
        unsigned long ino;
        if (strstr(line, "->") == NULL &&
            sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%lu", kind, &pid, &maj, &min, &ino) == 5 &&
            strcmp(kind, "FLOCK") == 0 && ino == st.st_ino && maj == major(st.st_dev) &&
            min == minor(st.st_dev)) {
            if (count < max)
                pids[count] = pid;
            count++;
        }
    }
    fclose(locks);
    return count;
}

int region_file_open(const char *path, bool for_writing, const char **why)
{
    int fd = open(path, (for_writing ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        *why = errno == ELOOP ? "it is a symbolic link" : strerror(errno);
        return -1;
    }
    struct stat st;
    uid_t me = geteuid();
    if (fstat(fd, &st) != 0)
        *why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        *why = "it is not a regular file";
    else if (st.st_uid != me && (for_writing || me != 0))
        *why = "it belongs to another user";
    else if (for_writing && (st.st_mode & 077) != 0)
        *why = "other users may open it (its mode is not 0600)";
    else
        return fd;
    close(fd);
    errno = EPERM; /* it is there, and refused: callers tell that from ENOENT */
    return -1;
}

int region_file_check(const struct grpcprom_header *h, size_t size, const char **why)
{
    if (size < sizeof(*h) || memcmp(h->magic, GRPCPROM_MAGIC, sizeof(h->magic)) != 0)
        *why = "it is not a grpcprom region (no magic)";
    else if (h->layout_version != GRPCPROM_LAYOUT_VERSION)
        *why = "it was made by another version of grpcprom (its layout differs)";
    else if (grpcprom_region_check(h, size) != 0)
        *why = "its header does not agree with its size: it is damaged";
    else
        return 0;
    return -1;
}

struct grpcprom_header *region_file_map(int fd, bool writable, size_t *size, const char **why)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *why = strerror(errno);
        return NULL;
    }
    if (st.st_size < (off_t)sizeof(struct grpcprom_header)) {
        *why = "it is too small to be a grpcprom region";
        return NULL;
    }
    void *h = mmap(NULL, (size_t)st.st_size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED,
                   fd, 0);
    if (h == MAP_FAILED) {
        *why = strerror(errno);
        return NULL;
    }
    if (region_file_check(h, (size_t)st.st_size, why) != 0) {
        munmap(h, (size_t)st.st_size);
        return NULL;
    }
    *size = (size_t)st.st_size;
    return h;
}

enum region_attach region_file_attach(const char *path, bool writable,
                                      struct grpcprom_header **out, const char **why)
{
    int fd = region_file_open(path, writable, why);
    if (fd < 0)
        return errno == ENOENT ? REGION_MISSING : REGION_UNUSABLE;
    size_t size;
    struct grpcprom_header *h = region_file_map(fd, writable, &size, why);
    if (h == NULL) {
        close(fd);
        return REGION_UNUSABLE;
    }
    if (flock(fd, LOCK_SH | LOCK_NB) == 0 && region_file_is(path, fd)) {
        *out = h;
        return REGION_ATTACHED;
    }
    munmap(h, size);
    close(fd);
    return REGION_REMOVED;
}

struct grpcprom_header *region_file_copy(int fd, size_t *size, const char **why)
{
    struct grpcprom_header h;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *why = strerror(errno);
        return NULL;
    }
    if (st.st_size < (off_t)sizeof(h) || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
        *why = "it is too small to be a grpcprom region";
        return NULL;
    }
    /* The header is checked before its size is believed: a planted file
     * cannot make this allocate more than the file holds. */
    if (region_file_check(&h, (size_t)st.st_size, why) != 0)
        return NULL;
    size_t want = (size_t)h.region_size;
    /* aligned as the header is declared, for the sanitizers' sake */
    char *data = aligned_alloc(64, (want + 63) / 64 * 64);
    if (data == NULL) {
        *why = "out of memory";
        return NULL;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(fd, data + got, want - got, (off_t)got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got == want && region_file_check((struct grpcprom_header *)data, got, why) == 0) {
        *size = got;
        return (struct grpcprom_header *)data;
    }
    if (got != want)
        *why = "it shrank while it was read";
    free(data);
    return NULL;
}

bool region_file_remove_if_unused(const struct region_file *f)
{
    int fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return false;
    struct stat st;
    bool removed = fstat(fd, &st) == 0 && (st.st_uid == geteuid() || geteuid() == 0) &&
                   flock(fd, LOCK_EX | LOCK_NB) == 0 && region_file_is(f->path, fd) &&
                   unlink(f->path) == 0;
    close(fd);
    return removed;
}

bool region_file_header(const struct region_file *f, struct grpcprom_header *h, uid_t *owner)
{
    int fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    bool read_whole = fd >= 0 && fstat(fd, &st) == 0 &&
                      pread(fd, h, sizeof(*h), 0) == (ssize_t)sizeof(*h);
    if (fd >= 0)
        close(fd);
    if (read_whole)
        *owner = st.st_uid;
    return read_whole;
}

bool region_file_is(const char *path, int fd)
{
    struct stat by_name, by_fd;
    return stat(path, &by_name) == 0 && fstat(fd, &by_fd) == 0 && by_name.st_dev == by_fd.st_dev &&
           by_name.st_ino == by_fd.st_ino;
}

bool process_alive(long pid)
{
    return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}
