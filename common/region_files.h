/* region_files.h: where regions live as files, so that processes can share
 * one and anyone can read one, live or left by a crashed process.
 *
 * A region is a file in /dev/shm: "grpcprom.name.NAME" for a region that
 * processes share by name (GRPCPROM_SHM), "grpcprom.pid.PID" for a process
 * of its own. Every process counting in a region holds a shared flock on it
 * (forked children share their parent's), so a region is in use exactly as
 * long as the kernel lists a lock on it; `grpcprom gc` removes a region only
 * while it holds the exclusive lock, and a process that attaches checks the
 * name still leads to the file it locked. Files are created whole under a
 * temporary name and linked into place, so a region found by name is
 * complete. */
#ifndef GRPCPROM_REGION_FILES_H
#define GRPCPROM_REGION_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "region.h"

#define REGION_DIR "/dev/shm"
#define REGION_NAME_MAX 64
#define REGION_PATH_MAX 128

/* A region file found in the directory. */
struct region_file {
    char path[REGION_PATH_MAX];
    char name[REGION_NAME_MAX + 1];   /* a shared region's name; "" for a process's own */
    long pid;                         /* a process's own region: that process; else 0 */
};

/* True when `name` may name a region: 1 to 64 of A-Z a-z 0-9 _ . -, not
 * starting with a dot. */
bool region_name_ok(const char *name);

/* The region file of `name`, or with name NULL or "" of process `pid`. */
void region_file_at(struct region_file *f, const char *name, long pid);

/* Calls `fn` for every region file (complete ones only) until it returns
 * non-zero; returns that value, 0, or -errno when the directory cannot be
 * read. */
int region_files_each(int (*fn)(const struct region_file *f, void *ctx), void *ctx);

/* The processes holding a lock on the open file `fd` (every process that
 * counts in the region, forked children through their parent): how many,
 * and the first `max` of their pids in `pids`. From /proc/locks: nothing is
 * locked or changed. -errno when that cannot be read. */
int region_file_holders(int fd, long *pids, int max);

/* Opens a region file and checks it can be trusted: a regular file, owned
 * by this user (by anyone when this user is root), and, `for_writing`,
 * owned by this user and private to it (mode 0600). The fd, or -1 with
 * *why saying which check failed. */
int region_file_open(const char *path, bool for_writing, const char **why);

/* Checks the header of a region of `size` bytes: 0, or -1 with *why. */
int region_file_check(const struct grpcprom_header *h, size_t size, const char **why);

/* Maps the region in `fd` (shared; writable or read-only), checked: NULL
 * with *why. Its size in *size. */
struct grpcprom_header *region_file_map(int fd, bool writable, size_t *size, const char **why);

/* What region_file_attach found. */
enum region_attach {
    REGION_ATTACHED,   /* mapped and locked shared: in use while its fd stays open */
    REGION_MISSING,    /* no file of that name */
    REGION_REMOVED,    /* a `grpcprom gc` is removing it: look again */
    REGION_UNUSABLE,   /* refused, *why says why */
};

/* Opens, checks and maps (writable or read-only) the region file `path`,
 * then takes a shared lock on it and checks the name still leads to it,
 * keeping its fd open for good on success: the lock says the region is in
 * use, and `grpcprom gc` (which removes a region only under the exclusive
 * lock) leaves it. */
enum region_attach region_file_attach(const char *path, bool writable,
                                      struct grpcprom_header **out, const char **why);

/* A copy of the region in `fd`, checked: what `grpcprom` renders, so that
 * nothing another process writes can change the sizes it checked. NULL
 * with *why. Free it with free(). */
struct grpcprom_header *region_file_copy(int fd, size_t *size, const char **why);

/* Removes the region file `f` when no process holds it (this user's, or
 * anyone's for root), holding its exclusive lock meanwhile so that no
 * process attaches to it as it goes. */
bool region_file_remove_if_unused(const struct region_file *f);

/* The header of the region file `f`, unchecked (only its plain fields
 * may be used), and the file's owner; false when it cannot be read. */
bool region_file_header(const struct region_file *f, struct grpcprom_header *h, uid_t *owner);

/* True when `path` still names the file open in `fd`: after a lock was
 * taken, that no `grpcprom gc` removed it meanwhile. */
bool region_file_is(const char *path, int fd);

/* True when process `pid` exists (it may belong to another user). */
bool process_alive(long pid);

#endif
