/* access.h: who may read the page. An address list is checked as a
 * connection is accepted, before any byte of it is read; credentials from
 * files (Basic with bcrypt hashes, or a Bearer token) are checked on each
 * request. Nothing here is used on the RPC path. */
#ifndef GRPCPROM_ACCESS_H
#define GRPCPROM_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACCESS_MAX_RULES 32

struct access_rule {
    uint32_t net, mask;   /* host byte order */
    bool allow;
};

/* civetweb's access_control_list syntax: "-0.0.0.0/0,+10.0.0.0/8". */
struct access_list {
    unsigned count;       /* 0: every address may connect */
    struct access_rule rules[ACCESS_MAX_RULES];
};

/* Parses a list: NULL, or what is wrong with it. */
const char *access_parse_list(const char *text, struct access_list *out);

/* The last rule that matches decides; with rules and none matching, the
 * address is refused, as civetweb does. `addr` in host byte order. */
bool access_list_allows(const struct access_list *list, uint32_t addr);

struct access_users;

/* Loads "user:bcrypt-hash" lines (htpasswd -B, or the hashes of an
 * exporter-toolkit web config): NULL, or what is wrong (then *out is NULL). */
const char *access_load_users(const char *path, struct access_users **out);

/* Frees what access_load_users loaded (the page keeps it for its life). */
void access_free_users(struct access_users *users);

/* Loads a Bearer token (the file's first line): NULL, or what is wrong. */
const char *access_load_token(const char *path, char **out);

/* True when an Authorization header value carries a user and password
 * whose hash matches, or the token; either may be NULL (not configured). */
bool access_authorized(struct access_users *users, const char *token, const char *authorization);

#endif
