/* access.c: the page's address list and credential checks. */
#include "access.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ACCESS_FILE_MAX 65536     /* a credentials file larger than this is refused */
#define ACCESS_FIELD_MAX 1024     /* a user, password, hash or token */
#define ACCESS_CRYPT_DATA 65536   /* libxcrypt's struct crypt_data is 32 KiB */
#define ACCESS_MAX_COST 12        /* bcrypt cost: 2^12 rounds take about 0.25 s here */
#define ACCESS_HASHES_PER_S 5     /* bcrypt checks the page thread makes per second */

const char *access_parse_list(const char *text, struct access_list *out)
{
    out->count = 0;
    const char *p = text;
    while (*p) {
        if (out->count == ACCESS_MAX_RULES)
            return "too many subnets (32 at most)";
        if (*p != '+' && *p != '-')
            return "each subnet starts with + (allow) or - (deny)";
        struct access_rule *r = &out->rules[out->count];
        r->allow = *p++ == '+';
        size_t len = strcspn(p, ",");
        char addr[32];
        if (len == 0 || len >= sizeof(addr))
            return "expected [+|-]IPv4[/bits] entries separated by commas";
        memcpy(addr, p, len);
        addr[len] = '\0';
        unsigned bits = 32;
        char *slash = strchr(addr, '/');
        if (slash) {
            char *end;
            errno = 0;
            unsigned long b = strtoul(slash + 1, &end, 10);
            if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || errno || b > 32)
                return "the prefix length after / must be 0 to 32";
            bits = (unsigned)b;
            *slash = '\0';
        }
        struct in_addr in;
        if (inet_pton(AF_INET, addr, &in) != 1)
            return "expected IPv4 addresses such as 10.0.0.0/8";
        r->mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
        r->net = ntohl(in.s_addr) & r->mask;
        out->count++;
        p += len;
        if (*p == ',' && *++p == '\0')
            return "expected a subnet after the last comma";
    }
    return NULL;
}

bool access_list_allows(const struct access_list *list, uint32_t addr)
{
    bool allowed = list->count == 0;
    for (unsigned i = 0; i < list->count; i++)
        if ((addr & list->rules[i].mask) == list->rules[i].net)
            allowed = list->rules[i].allow;
    return allowed;
}

#define ACCESS_MAX_USERS 100

struct access_users {
    char *text;                   /* the file; the users and hashes point into it */
    size_t len;
    size_t count;
    const char *user[ACCESS_MAX_USERS], *hash[ACCESS_MAX_USERS];
    char *(*crypt_r)(const char *, const char *, void *);
    void *crypt_data;
    char last_good[2 * ACCESS_FIELD_MAX + 2]; /* "user:password" last verified */
};

/* Reads a small regular file whole, NUL-terminated: NULL, or what is
 * wrong. It never waits (a FIFO is refused, not read). */
static const char *read_small_file(const char *path, char **text, size_t *len)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return "cannot open it";
    struct stat st;
    char *buf = NULL;
    const char *problem = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        problem = "it is not a regular file";
    else if (st.st_size > ACCESS_FILE_MAX)
        problem = "it is larger than 64 KiB";
    else if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
        problem = "out of memory";
    size_t n = 0;
    while (problem == NULL && n < (size_t)st.st_size) {
        ssize_t got = read(fd, buf + n, (size_t)st.st_size - n);
        if (got <= 0)
            problem = "cannot read it";
        else
            n += (size_t)got;
    }
    close(fd);
    if (problem) {
        free(buf);
        return problem;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return NULL;
}

static bool is_bcrypt(const char *hash)
{
    return strlen(hash) == 60 && hash[0] == '$' && hash[1] == '2' &&
           (hash[2] == 'a' || hash[2] == 'b' || hash[2] == 'y') && hash[3] == '$' &&
           hash[4] >= '0' && hash[4] <= '9' && hash[5] >= '0' && hash[5] <= '9' && hash[6] == '$';
}

static int bcrypt_cost(const char *hash)
{
    return (hash[4] - '0') * 10 + (hash[5] - '0');
}

const char *access_load_users(const char *path, struct access_users **out)
{
    *out = NULL;
    struct access_users *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return "out of memory";
    const char *problem = read_small_file(path, &u->text, &u->len);
    for (char *line = u->text, *next; problem == NULL && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        char *colon = strchr(line, ':');
        if (colon == NULL || colon == line || (size_t)(colon - line) >= ACCESS_FIELD_MAX)
            problem = "expected user:hash lines";
        else if (!is_bcrypt(colon + 1))
            problem = "the hashes must be bcrypt ($2y$, $2b$ or $2a$; htpasswd -B makes them)";
        else if (bcrypt_cost(colon + 1) > ACCESS_MAX_COST)
            problem = "a bcrypt cost above 12 would stall the page (htpasswd -B -C 10)";
        else if (u->count == ACCESS_MAX_USERS)
            problem = "it names more than 100 users";
        else {
            *colon = '\0';
            u->user[u->count] = line;
            u->hash[u->count++] = colon + 1;
        }
    }
    if (problem == NULL && u->count == 0)
        problem = "it names no user";
    if (problem == NULL) {
        void *lib = dlopen("libcrypt.so.1", RTLD_NOW | RTLD_LOCAL);
        *(void **)&u->crypt_r = lib ? dlsym(lib, "crypt_r") : NULL;
        u->crypt_data = calloc(1, ACCESS_CRYPT_DATA);
        if (u->crypt_r == NULL || u->crypt_data == NULL)
            problem = "libcrypt.so.1 (crypt_r) cannot be loaded";
    }
    if (problem) {
        access_free_users(u);
        return problem;
    }
    *out = u;
    return NULL;
}

void access_free_users(struct access_users *users)
{
    if (users) {
        free(users->text);
        free(users->crypt_data);
        free(users);
    }
}

const char *access_load_token(const char *path, char **out)
{
    size_t len;
    const char *problem = read_small_file(path, out, &len);
    if (problem)
        return problem;
    size_t n = strcspn(*out, "\r\n");
    while (n > 0 && ((*out)[n - 1] == ' ' || (*out)[n - 1] == '\t'))
        n--; /* as Prometheus trims its credentials_file */
    (*out)[n] = '\0';
    if ((*out)[0] == '\0' || strlen(*out) >= ACCESS_FIELD_MAX) {
        free(*out);
        *out = NULL;
        return "its first line must hold a token of 1 to 1023 bytes";
    }
    return NULL;
}

/* Compares in a time that depends on the lengths only, never on where the
 * bytes differ. */
static bool same_secret(const char *a, size_t an, const char *b, size_t bn)
{
    unsigned char diff = an != bn;
    for (size_t i = 0; i < an && i < bn; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes standard base64 into out (NUL-terminated): its length, or -1. */
static long base64_decode(const char *in, char *out, size_t room)
{
    size_t n = 0;
    unsigned bits = 0, acc = 0;
    for (; *in && *in != '='; in++) {
        int v = base64_value((unsigned char)*in);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n + 1 >= room)
                return -1;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    while (*in == '=')
        in++;
    if (*in != '\0')
        return -1;
    out[n] = '\0';
    return (long)n;
}

/* The hash of `user`, or NULL. */
static const char *hash_of(const struct access_users *u, const char *user)
{
    for (size_t i = 0; i < u->count; i++)
        if (strcmp(u->user[i], user) == 0)
            return u->hash[i];
    return NULL;
}

/* bcrypt takes tens of milliseconds on purpose, on the page's one thread:
 * at most ACCESS_HASHES_PER_S checks a second, so a client guessing
 * passwords cannot keep the page from answering scrapes. */
static bool may_hash(void)
{
    static int64_t second;
    static int checks;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ts.tv_sec != second) {
        second = ts.tv_sec;
        checks = 0;
    }
    return checks++ < ACCESS_HASHES_PER_S;
}

/* The credentials verified last are remembered, so a scrape every few
 * seconds costs one compare. An unknown user is hashed against a known
 * user's hash, so the time taken does not tell which users exist. */
static bool basic_ok(struct access_users *u, const char *encoded)
{
    char pair[2 * ACCESS_FIELD_MAX + 2];
    long n = base64_decode(encoded, pair, sizeof(pair));
    if (n < 0 || (size_t)n != strlen(pair))
        return false;
    if (u->last_good[0] && same_secret(pair, (size_t)n, u->last_good, strlen(u->last_good)))
        return true;
    char *colon = strchr(pair, ':');
    if (colon == NULL)
        return false;
    *colon = '\0';
    const char *hash = hash_of(u, pair);
    if (!may_hash())
        return false;
    const char *got = u->crypt_r(colon + 1, hash ? hash : u->hash[0], u->crypt_data);
    bool ok = hash && got && same_secret(got, strlen(got), hash, strlen(hash));
    *colon = ':';
    if (ok)
        memcpy(u->last_good, pair, (size_t)n + 1);
    return ok;
}

bool access_authorized(struct access_users *users, const char *token, const char *authorization)
{
    if (authorization == NULL)
        return false;
    if (users && strncasecmp(authorization, "Basic ", 6) == 0)
        return basic_ok(users, authorization + 6 + strspn(authorization + 6, " "));
    if (token && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *given = authorization + 7 + strspn(authorization + 7, " ");
        return same_secret(given, strlen(given), token, strlen(token));
    }
    return false;
}
