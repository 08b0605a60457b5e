/* test_tls_files.c: the page's certificate and key, read when they change. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "tls_files.h"

static char dir[64];

static const char *path_of(const char *name)
{
    static char paths[4][96];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

/* Writes a file the way a renewal does: a new file renamed into place. */
static void put(const char *name, const char *text)
{
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s.new", path_of(name));
    FILE *f = fopen(tmp, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path_of(name)) != 0)
        abort();
}

/* Checks the files once; returns the state, with the texts read joined as
 * "cert|key" in `got` when they changed. */
static enum tls_files_state check(struct tls_files *f, char *got, size_t room, const char **why)
{
    char *cert = NULL, *key = NULL;
    *why = NULL;
    enum tls_files_state state = tls_files_check(f, &cert, &key, why);
    got[0] = '\0';
    if (state == TLS_FILES_CHANGED)
        snprintf(got, room, "%s|%s", cert, key);
    free(cert);
    free(key);
    return state;
}

static void test_read_when_changed(void)
{
    put("c.pem", "CERT1");
    put("k.pem", "KEY1");
    struct tls_files f = {.cert_path = strdup(path_of("c.pem")), .key_path = strdup(path_of("k.pem"))};
    char got[64];
    const char *why;
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_CHANGED);
    CHECK_STR(got, "CERT1|KEY1");
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_UNCHANGED);
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_UNCHANGED);

    /* Renewed: both read again, even when only one file changed. */
    put("k.pem", "KEY2");
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_CHANGED);
    CHECK_STR(got, "CERT1|KEY2");
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_UNCHANGED);

    /* The same bytes in a new file (a new inode) count as a change. */
    put("c.pem", "CERT1");
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_CHANGED);
    CHECK_STR(got, "CERT1|KEY2");

    /* Gone: said once, then quiet until the files change again. */
    unlink(path_of("k.pem"));
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_UNREADABLE);
    CHECK(why != NULL && strstr(why, "the key") && strstr(why, "No such file"));
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_UNCHANGED);
    put("k.pem", "KEY3");
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_CHANGED);
    CHECK_STR(got, "CERT1|KEY3");
    free((char *)f.cert_path);
    free((char *)f.key_path);
}

static void test_refused_files(void)
{
    const char *why;
    char got[64];
    /* A directory is not a certificate. */
    struct tls_files f = {.cert_path = strdup(dir), .key_path = strdup(path_of("k.pem"))};
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_UNREADABLE);
    CHECK(why != NULL && strstr(why, "the certificate") && strstr(why, "not a regular file"));
    free((char *)f.cert_path);

    /* Nor is a file of 2 MiB. */
    char *big = malloc(2 << 20);
    memset(big, 'A', (2 << 20) - 1);
    big[(2 << 20) - 1] = '\0';
    put("big.pem", big);
    free(big);
    f = (struct tls_files){.cert_path = strdup(path_of("big.pem")), .key_path = f.key_path};
    CHECK_INT(check(&f, got, sizeof(got), &why), TLS_FILES_UNREADABLE);
    CHECK(why != NULL && strstr(why, "over 1 MiB"));
    free((char *)f.cert_path);

    /* A file the process may not read (when not running as root). */
    put("c.pem", "CERT");
    chmod(path_of("c.pem"), 0);
    f = (struct tls_files){.cert_path = strdup(path_of("c.pem")), .key_path = f.key_path};
    enum tls_files_state state = check(&f, got, sizeof(got), &why);
    if (geteuid() != 0) {
        CHECK_INT(state, TLS_FILES_UNREADABLE);
        CHECK(why != NULL && strstr(why, "Permission denied"));
    } else {
        CHECK_INT(state, TLS_FILES_CHANGED);
    }
    free((char *)f.cert_path);
    free((char *)f.key_path);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/grpcprom-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    test_read_when_changed();
    test_refused_files();
    const char *names[] = {"c.pem", "k.pem", "big.pem"};
    for (size_t i = 0; i < 3; i++)
        unlink(path_of(names[i]));
    rmdir(dir);
    CHECK_DONE();
}
