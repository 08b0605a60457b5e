/* options.h: every GRPCPROM_* setting, read once from the environment. */
#ifndef GRPCPROM_OPTIONS_H
#define GRPCPROM_OPTIONS_H

#include <stdbool.h>

#include "access.h"
#include "page.h"
#include "log.h"
#include "region.h"
#include "region_files.h"

/* GRPCPROM_CLIENT: whose client calls are counted. */
enum client_counting {
    CLIENT_AUTO,    /* in a process that serves */
    CLIENT_ON,      /* in every process: a client-only one gets a region and a page too */
    CLIENT_OFF,
};

struct options {
    bool disable;                              /* GRPCPROM_DISABLE: pure pass-through */
    bool internals;                            /* GRPCPROM_INTERNALS: read libgrpc's memory */
    char listen[64];                           /* GRPCPROM_LISTEN: "ip:port", "" = no page */
    double buckets[GRPCPROM_MAX_BUCKETS];      /* GRPCPROM_BUCKETS, seconds, increasing */
    unsigned bucket_count;
    enum log_level log_level;                  /* GRPCPROM_LOG */
    unsigned max_methods;                      /* GRPCPROM_MAX_METHODS: region capacity */
    unsigned max_calls;                        /* GRPCPROM_MAX_CALLS: calls followed at once */
    unsigned max_client_methods;               /* GRPCPROM_MAX_CLIENT_METHODS: of max_methods */
    struct access_list allow;                  /* GRPCPROM_ALLOW: who may connect to the page */
    char basic_auth_file[256];                 /* GRPCPROM_BASIC_AUTH_FILE, "" = none */
    char bearer_token_file[256];               /* GRPCPROM_BEARER_TOKEN_FILE, "" = none */
    char tls_cert_file[256];                   /* GRPCPROM_TLS_CERT, "" = plain HTTP */
    char tls_key_file[256];                    /* GRPCPROM_TLS_KEY */
    char protoset[1024];                       /* GRPCPROM_PROTOSET: descriptor sets, ':'-separated */
    char shm[REGION_NAME_MAX + 1];             /* GRPCPROM_SHM: a shared region's name, "" = own */
    enum client_counting client;               /* GRPCPROM_CLIENT */
    bool refuse_everyone;                      /* one of the five above was unusable */
};

/* Fills `o` from `lookup` (getenv, or a test's table). A bad value logs one
 * line naming the variable, the value and the default kept, then keeps it. */
void options_load(struct options *o, const char *(*lookup)(const char *name));

/* GRPCPROM_CLIENT as `lookup` gives it, read alone, saying nothing: a
 * process that is no server asks it before it may become anything. */
enum client_counting options_client(const char *(*lookup)(const char *name));

/* The page's access settings, pointing into `o`. */
void options_page_access(const struct options *o, struct page_access *out);

/* Whether `text` is a good value of the setting `name`: NULL, or one line
 * saying what is wrong with it (for a command that takes the same values). */
const char *options_check(const char *name, const char *text);

#endif
