/* page.h: the embedded HTTP page that serves the region as /metrics. */
#ifndef GRPCPROM_PAGE_H
#define GRPCPROM_PAGE_H

#include "access.h"
#include "region.h"

/* Who may read the page. */
struct page_access {
    struct access_list allow;       /* checked before any byte is read */
    const char *basic_auth_file;    /* "" or NULL: no Basic auth */
    const char *bearer_token_file;  /* "" or NULL: no Bearer token */
    const char *tls_cert_file;      /* both "" or NULL: plain HTTP */
    const char *tls_key_file;
    bool refuse_everyone;           /* a setting meant to restrict it is unusable */
};

/* What the page tells the process it runs in; either may be NULL. */
struct page_owner {
    /* It serves on `listen` now (called on the page's thread). */
    void (*bound)(const char *listen);
    /* Who holds `listen`, found taken at start: a hint for the message, or
     * NULL; *expected when that is as it should be (the message is then
     * only informative). */
    const char *(*why_taken)(const char *listen, bool *expected);
};

/* Loads libmicrohttpd and starts the page's thread on `listen` ("ip:port");
 * 0, or -1 after logging why. A taken address is retried every 2 s by the
 * thread (logged once). Credentials files that cannot be loaded make the
 * page refuse every request, and TLS files that cannot be used make it close
 * every connection (logged once); renewed TLS files are served within 5 s.
 * The host's signal mask and dispositions are left as they are, and the
 * thread stops at the host's exit. */
int page_start(const char *listen, const struct grpcprom_header *region,
               const struct page_access *access, const struct page_owner *owner);

#endif
