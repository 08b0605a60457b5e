/* options.c: one table of settings with their defaults and strict parsers. */
#include "options.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "region_files.h"

/* Each parser returns NULL on success or says what is wrong with the text. */
typedef const char *(*option_parser)(const char *text, struct options *o);

static const char *parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) { *out = true; return NULL; }
        if (strcasecmp(text, no[i]) == 0) { *out = false; return NULL; }
    }
    return "expected 1 or 0";
}

static const char *parse_disable(const char *text, struct options *o)
{
    return parse_bool(text, &o->disable);
}

static const char *parse_internals(const char *text, struct options *o)
{
    return parse_bool(text, &o->internals);
}

/* "none", "PORT" or "IPv4:PORT": the page listens on IPv4 and takes no names. */
static const char *parse_listen(const char *text, struct options *o)
{
    if (strcmp(text, "none") == 0) {
        o->listen[0] = '\0';
        return NULL;
    }
    const char *colon = strrchr(text, ':');
    const char *port = colon ? colon + 1 : text;
    char host[INET_ADDRSTRLEN] = "0.0.0.0";
    if (colon) {
        size_t len = (size_t)(colon - text);
        if (len == 0 || len >= sizeof(host))
            return "expected none, PORT or IPv4:PORT";
        memcpy(host, text, len);
        host[len] = '\0';
        struct in_addr addr;
        if (inet_pton(AF_INET, host, &addr) != 1)
            return "the host must be an IPv4 address such as 127.0.0.1";
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || errno || p < 1 || p > 65535)
        return "the port must be a number from 1 to 65535";
    snprintf(o->listen, sizeof(o->listen), "%s:%ld", host, p);
    return NULL;
}

static const char *parse_buckets(const char *text, struct options *o)
{
    double bounds[GRPCPROM_MAX_BUCKETS];
    unsigned n = 0;
    const char *p = text;
    for (;;) {
        if (n == GRPCPROM_MAX_BUCKETS)
            return "too many buckets (30 at most)";
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || v <= 0)
            return "expected positive numbers of seconds separated by commas";
        if (v > GRPCPROM_MAX_BUCKET_BOUND)
            return "a bound is over 1e9 seconds";
        if (n > 0 && !(v > bounds[n - 1]))
            return "the bounds must increase";
        bounds[n++] = v;
        if (*end == '\0')
            break;
        if (*end != ',')
            return "expected positive numbers of seconds separated by commas";
        p = end + 1;
    }
    memcpy(o->buckets, bounds, sizeof(bounds[0]) * n);
    o->bucket_count = n;
    return NULL;
}

static const char *parse_log(const char *text, struct options *o)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(text, names[i]) == 0) {
            o->log_level = (enum log_level)i;
            return NULL;
        }
    }
    return "expected error, warn, info or debug";
}

/* A whole number from 1 to max, digits only. */
static bool parse_count(const char *text, long max, unsigned *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (*text < '0' || *text > '9' || *end != '\0' || errno || v < 1 || v > max)
        return false;
    *out = (unsigned)v;
    return true;
}

static const char *parse_max_methods(const char *text, struct options *o)
{
    return parse_count(text, 100000, &o->max_methods) ? NULL : "expected a number from 1 to 100000";
}

static const char *parse_max_client_methods(const char *text, struct options *o)
{
    return parse_count(text, 100000, &o->max_client_methods) ? NULL
                                                              : "expected a number from 1 to 100000";
}

static const char *parse_max_calls(const char *text, struct options *o)
{
    return parse_count(text, 1000000, &o->max_calls) ? NULL : "expected a number from 1 to 1000000";
}

static const char *parse_allow(const char *text, struct options *o)
{
    return access_parse_list(text, &o->allow);
}

/* An absolute path, or "" for none. */
static const char *parse_path(const char *text, char *out, size_t room)
{
    if (text[0] != '\0' && (text[0] != '/' || strlen(text) >= room))
        return "expected an absolute path of a file";
    snprintf(out, room, "%s", text);
    return NULL;
}

static const char *parse_basic_auth_file(const char *text, struct options *o)
{
    return parse_path(text, o->basic_auth_file, sizeof(o->basic_auth_file));
}

static const char *parse_bearer_token_file(const char *text, struct options *o)
{
    return parse_path(text, o->bearer_token_file, sizeof(o->bearer_token_file));
}

static const char *parse_tls_cert(const char *text, struct options *o)
{
    return parse_path(text, o->tls_cert_file, sizeof(o->tls_cert_file));
}

static const char *parse_tls_key(const char *text, struct options *o)
{
    return parse_path(text, o->tls_key_file, sizeof(o->tls_key_file));
}

/* A region name (see region_files.h), or "" for a region of the process's own. */
static const char *parse_shm(const char *text, struct options *o)
{
    if (text[0] != '\0' && !region_name_ok(text))
        return "expected a name of 1 to 64 letters, digits, '_', '.' or '-', not starting with '.'";
    snprintf(o->shm, sizeof(o->shm), "%s", text);
    return NULL;
}

/* Absolute paths of descriptor sets, separated by ':', or "" for none. */
static const char *parse_protoset(const char *text, struct options *o)
{
    if (strlen(text) >= sizeof(o->protoset))
        return "too long (1023 bytes at most)";
    for (const char *p = text; *p; p = strchr(p, ':') ? strchr(p, ':') + 1 : p + strlen(p))
        if (*p != '/')
            return "expected absolute paths of descriptor sets, separated by ':'";
    snprintf(o->protoset, sizeof(o->protoset), "%s", text);
    return NULL;
}

static const char *const client_names[] = {"auto", "on", "off"};

static const char *parse_client(const char *text, struct options *o)
{
    for (size_t i = 0; i < sizeof(client_names) / sizeof(client_names[0]); i++) {
        if (strcmp(text, client_names[i]) == 0) {
            o->client = (enum client_counting)i;
            return NULL;
        }
    }
    return "expected auto, on or off";
}

enum client_counting options_client(const char *(*lookup)(const char *name))
{
    struct options scratch = {.client = CLIENT_AUTO};
    const char *text = lookup("GRPCPROM_CLIENT");
    if (text)
        parse_client(text, &scratch);
    return scratch.client;
}

/* A bad value keeps the default, except where the default would open what
 * the value meant to close (`fails_closed`): then the page refuses everyone. */
static const struct {
    const char *name;
    const char *default_text;
    option_parser parse;
    bool fails_closed;
} option_table[] = {
    {"GRPCPROM_DISABLE", "0", parse_disable, false},
    {"GRPCPROM_LOG", "warn", parse_log, false},
    {"GRPCPROM_LISTEN", "0.0.0.0:9091", parse_listen, false},
    {"GRPCPROM_BUCKETS", ".005,.01,.025,.05,.1,.25,.5,1,2.5,5,10", parse_buckets, false},
    {"GRPCPROM_MAX_METHODS", "1000", parse_max_methods, false},
    {"GRPCPROM_MAX_CALLS", "16384", parse_max_calls, false},
    {"GRPCPROM_MAX_CLIENT_METHODS", "100", parse_max_client_methods, false},
    {"GRPCPROM_ALLOW", "", parse_allow, true},
    {"GRPCPROM_BASIC_AUTH_FILE", "", parse_basic_auth_file, true},
    {"GRPCPROM_BEARER_TOKEN_FILE", "", parse_bearer_token_file, true},
    {"GRPCPROM_TLS_CERT", "", parse_tls_cert, true},
    {"GRPCPROM_TLS_KEY", "", parse_tls_key, true},
    {"GRPCPROM_SHM", "", parse_shm, false},
    {"GRPCPROM_PROTOSET", "", parse_protoset, false},
    {"GRPCPROM_INTERNALS", "1", parse_internals, false},
    {"GRPCPROM_CLIENT", "auto", parse_client, false},
};

void options_page_access(const struct options *o, struct page_access *out)
{
    *out = (struct page_access){.allow = o->allow,
                                .basic_auth_file = o->basic_auth_file,
                                .bearer_token_file = o->bearer_token_file,
                                .tls_cert_file = o->tls_cert_file,
                                .tls_key_file = o->tls_key_file,
                                .refuse_everyone = o->refuse_everyone};
}

const char *options_check(const char *name, const char *text)
{
    static char problem[160];
    struct options scratch;
    memset(&scratch, 0, sizeof(scratch));
    for (size_t i = 0; i < sizeof(option_table) / sizeof(option_table[0]); i++) {
        if (strcmp(option_table[i].name, name) != 0)
            continue;
        const char *why = option_table[i].parse(text, &scratch);
        if (why == NULL)
            return NULL;
        snprintf(problem, sizeof(problem), "%s=\"%.60s\": %s", name, text, why);
        return problem;
    }
    return "no such setting";
}

void options_load(struct options *o, const char *(*lookup)(const char *name))
{
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < sizeof(option_table) / sizeof(option_table[0]); i++)
        option_table[i].parse(option_table[i].default_text, o);
    for (size_t i = 0; i < sizeof(option_table) / sizeof(option_table[0]); i++) {
        const char *text = lookup(option_table[i].name);
        if (text == NULL)
            continue;
        const char *problem = option_table[i].parse(text, o);
        if (problem && option_table[i].fails_closed) {
            o->refuse_everyone = true;
            log_msg(LOG_ERROR, "%s=\"%.100s\": %s; the page refuses every request until it is fixed",
                    option_table[i].name, text, problem);
        } else if (problem) {
            const char *kept = option_table[i].default_text;
            log_msg(LOG_ERROR, "%s=\"%.100s\": %s; %s%s", option_table[i].name, text, problem,
                    kept[0] ? "using the default " : "ignoring it", kept);
        }
    }
    log_set_level(o->log_level);
}
