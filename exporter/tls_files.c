/* tls_files.c: reads the page's certificate and key when their files change. */
#include "tls_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_PEM_BYTES = 1 << 20 }; /* a long certificate chain is a few KiB */

static struct file_version version_of(const struct stat *st)
{
    return (struct file_version){st->st_dev, st->st_ino, st->st_size, st->st_mtim, st->st_ctim};
}

static bool same_version(const struct file_version *a, const struct file_version *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* A regular file's whole text, NUL-terminated; NULL with errno when it is
 * not readable, not a regular file (EINVAL) or too long (EFBIG). */
static char *read_pem(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *text = NULL;
    if (fstat(fd, &st) != 0)
        goto out;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        goto out;
    }
    if (st.st_size > MAX_PEM_BYTES) {
        errno = EFBIG;
        goto out;
    }
    text = malloc((size_t)st.st_size + 1);
    size_t len = 0;
    ssize_t n = 1;
    while (text != NULL && len < (size_t)st.st_size &&
           (n = read(fd, text + len, (size_t)st.st_size - len)) > 0)
        len += (size_t)n;
    if (text != NULL && n < 0) {
        free(text);
        text = NULL;
    } else if (text != NULL) {
        text[len] = '\0'; /* a file that shrank meanwhile is read as it is now */
    }
out:
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return text;
}

static const char *describe(int err)
{
    return err == EINVAL ? "not a regular file"
         : err == EFBIG  ? "over 1 MiB, not a PEM certificate or key"
                         : strerror(err);
}

enum tls_files_state tls_files_check(struct tls_files *f, char **cert, char **key,
                                     const char **why)
{
    struct stat cert_st, key_st;
    bool cert_ok = stat(f->cert_path, &cert_st) == 0;
    int cert_err = errno;
    bool key_ok = stat(f->key_path, &key_st) == 0;
    int key_err = errno;
    struct file_version cert_now = {0}, key_now = {0};
    if (cert_ok)
        cert_now = version_of(&cert_st);
    if (key_ok)
        key_now = version_of(&key_st);
    if (f->read_once && same_version(&cert_now, &f->cert_seen) &&
        same_version(&key_now, &f->key_seen))
        return TLS_FILES_UNCHANGED;
    f->read_once = true;
    f->cert_seen = cert_now;
    f->key_seen = key_now;

    static char reason[160]; /* only the page reads the files, one call at a time */
    if (!cert_ok || !key_ok) {
        snprintf(reason, sizeof(reason), "cannot read %s: %s", cert_ok ? "the key" : "the certificate",
                 strerror(cert_ok ? key_err : cert_err));
        *why = reason;
        return TLS_FILES_UNREADABLE;
    }
    *cert = read_pem(f->cert_path);
    int err = errno;
    *key = *cert ? read_pem(f->key_path) : NULL;
    if (*cert == NULL || *key == NULL) {
        snprintf(reason, sizeof(reason), "cannot read %s: %s",
                 *cert ? "the key" : "the certificate", describe(*cert ? errno : err));
        free(*cert);
        *cert = NULL;
        *why = reason;
        return TLS_FILES_UNREADABLE;
    }
    return TLS_FILES_CHANGED;
}
