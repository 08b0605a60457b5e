/* test_access.c: the page's address list, credential files and checks. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "check.h"

/* "secret" under bcrypt, cost 5 (as htpasswd -B -C 5 would make it). */
#define SECRET_HASH "$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a"

static uint32_t ip(const char *text)
{
    struct in_addr in;
    inet_pton(AF_INET, text, &in);
    return ntohl(in.s_addr);
}

/* Writes text to a new temporary file, which the next call removes;
 * returns its path. */
static const char *file_with(const char *text)
{
    static char path[64];
    if (path[0])
        unlink(path);
    snprintf(path, sizeof(path), "/tmp/grpcprom-access-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        abort();
    close(fd);
    return path;
}

static void test_lists(void)
{
    struct access_list l;
    CHECK(access_parse_list("", &l) == NULL);
    CHECK(access_list_allows(&l, ip("192.0.2.1")));

    CHECK(access_parse_list("-0.0.0.0/0,+10.0.0.0/8,-10.1.0.0/16,+127.0.0.1", &l) == NULL);
    CHECK_INT(l.count, 4);
    CHECK(access_list_allows(&l, ip("10.2.3.4")));
    CHECK(!access_list_allows(&l, ip("10.1.3.4")));   /* the last match wins */
    CHECK(access_list_allows(&l, ip("127.0.0.1")));
    CHECK(!access_list_allows(&l, ip("127.0.0.2")));
    CHECK(!access_list_allows(&l, ip("192.0.2.1")));

    CHECK(access_parse_list("+10.0.0.0/8", &l) == NULL); /* rules and no match: refused */
    CHECK(!access_list_allows(&l, ip("192.0.2.1")));
    CHECK(access_list_allows(&l, ip("10.255.0.1")));

    const char *bad[] = {"10.0.0.0/8", "+10.0.0.0/33", "+10.0.0/8x", "+host.example", "+1.2.3.4,",
                         "+1.2.3.4,,+5.6.7.8", "+::1", "+1.2.3.4/", "+1.2.3.4/-1", "-"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(access_parse_list(bad[i], &l) != NULL);
    char many[1024] = "";
    for (int i = 0; i < ACCESS_MAX_RULES + 1; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s+10.0.0.%d", i ? "," : "", i);
    CHECK(access_parse_list(many, &l) != NULL);
}

static void test_basic(void)
{
    struct access_users *users = NULL;
    CHECK(access_load_users(file_with("# htpasswd -B\nalice:" SECRET_HASH "\r\n\ncarol:" SECRET_HASH "\n"),
                            &users) == NULL);
    CHECK(users != NULL);
    CHECK(access_authorized(users, NULL, "Basic YWxpY2U6c2VjcmV0"));     /* alice:secret */
    CHECK(access_authorized(users, NULL, "basic YWxpY2U6c2VjcmV0"));     /* the scheme has no case */
    CHECK(access_authorized(users, NULL, "Basic YWxpY2U6c2VjcmV0"));     /* remembered */
    CHECK(!access_authorized(users, NULL, "Basic YWxpY2U6d3Jvbmc="));    /* alice:wrong */
    CHECK(!access_authorized(users, NULL, "Basic Ym9iOnNlY3JldA=="));    /* bob: no such user */
    CHECK(!access_authorized(users, NULL, "Basic YWxpY2VzZWNyZXQ="));    /* no colon */
    CHECK(!access_authorized(users, NULL, "Basic !!!"));
    CHECK(!access_authorized(users, NULL, "Basic "));
    CHECK(!access_authorized(users, NULL, "Bearer YWxpY2U6c2VjcmV0"));
    CHECK(!access_authorized(users, NULL, NULL));
    char huge[8192];
    memset(huge, 'A', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    memcpy(huge, "Basic ", 6);
    CHECK(!access_authorized(users, NULL, huge));
    access_free_users(users);

    struct access_users *none = NULL;
    CHECK(access_load_users("/nonexistent/users", &none) != NULL);
    CHECK(access_load_users(file_with("alice:$6$salt$plainsha512hashnotbcrypt\n"), &none) != NULL);
    CHECK(access_load_users(file_with("alice:secret\n"), &none) != NULL);
    CHECK(access_load_users(file_with("# nobody\n\n"), &none) != NULL);
    CHECK(access_load_users(file_with(":" SECRET_HASH "\n"), &none) != NULL);
    /* A cost that would stall the page for seconds per check. */
    CHECK(access_load_users(file_with("alice:$2b$13$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a\n"),
                            &none) != NULL);
    /* A FIFO is refused at once, never waited on. */
    char fifo[] = "/tmp/grpcprom-access-fifo-XXXXXX";
    CHECK(mkdtemp(fifo) != NULL);
    char fifo_path[64];
    snprintf(fifo_path, sizeof(fifo_path), "%s/users", fifo);
    CHECK(mkfifo(fifo_path, 0600) == 0);
    CHECK(access_load_users(fifo_path, &none) != NULL);
    unlink(fifo_path);
    rmdir(fifo);
    CHECK(none == NULL);
}

/* Waits for the start of the next second of the monotonic clock. */
static void next_second(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    time_t now = ts.tv_sec;
    while (ts.tv_sec == now) {
        usleep(10000);
        clock_gettime(CLOCK_MONOTONIC, &ts);
    }
}

/* A client guessing passwords gets five bcrypt checks a second; past that
 * even the right password is refused until the next second. */
static void test_guessing_budget(void)
{
    struct access_users *users = NULL;
    CHECK(access_load_users(file_with("carol:" SECRET_HASH "\n"), &users) == NULL);
    next_second();
    for (int i = 0; i < 5; i++)
        CHECK(!access_authorized(users, NULL, "Basic Y2Fyb2w6d3Jvbmc=")); /* carol:wrong */
    CHECK(!access_authorized(users, NULL, "Basic Y2Fyb2w6c2VjcmV0"));     /* carol:secret */
    next_second();
    CHECK(access_authorized(users, NULL, "Basic Y2Fyb2w6c2VjcmV0"));
    access_free_users(users);
}

static void test_bearer(void)
{
    char *token = NULL;
    CHECK(access_load_token(file_with("s3cr3t-t0ken \t\n"), &token) == NULL);
    CHECK_STR(token, "s3cr3t-t0ken");
    CHECK(access_authorized(NULL, token, "Bearer s3cr3t-t0ken"));
    CHECK(!access_authorized(NULL, token, "Bearer s3cr3t-t0ke"));
    CHECK(!access_authorized(NULL, token, "Bearer s3cr3t-t0kenX"));
    CHECK(!access_authorized(NULL, token, "Basic s3cr3t-t0ken"));
    CHECK(!access_authorized(NULL, token, "s3cr3t-t0ken"));
    char *none = NULL;
    CHECK(access_load_token(file_with("\n"), &none) != NULL);
    CHECK(access_load_token("/nonexistent/token", &none) != NULL);
    free(token);
}

int main(void)
{
    test_lists();
    test_basic();
    test_bearer();
    test_guessing_budget();
    unlink(file_with(""));
    CHECK_DONE();
}
