/* tls_files.h: the page's certificate and key, read from their files again
 * whenever either changes, so that a renewed certificate is served without
 * a restart (as Prometheus exporters do). */
#ifndef GRPCPROM_TLS_FILES_H
#define GRPCPROM_TLS_FILES_H

#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

/* What identifies one version of a file: a rename or a rewrite changes it. */
struct file_version {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
};

struct tls_files {
    const char *cert_path, *key_path;
    bool read_once;                      /* the versions below were read */
    struct file_version cert_seen, key_seen;
};

enum tls_files_state { TLS_FILES_UNCHANGED, TLS_FILES_CHANGED, TLS_FILES_UNREADABLE };

/* Looks at both files: when either differs from what was read last (or on
 * the first call), reads both. CHANGED fills *cert and *key with their PEM
 * text (NUL-terminated, the caller frees them); UNREADABLE says why in
 * *why, once per version of the files, and UNCHANGED follows until they
 * change again. */
enum tls_files_state tls_files_check(struct tls_files *f, char **cert, char **key,
                                     const char **why);

#endif
