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
    bool refuse_everyone;           /* a setting meant to restrict it is unusable */
};

/* Loads libmicrohttpd and starts the page's thread on `listen` ("ip:port");
 * 0, or -1 after logging why. A taken address is retried every 2 s by the
 * thread (logged once). Credentials files that cannot be loaded make the
 * page refuse every request (logged once). The host's signal mask and
 * dispositions are left as they are. */
int page_start(const char *listen, const struct grpcprom_header *region,
               const struct page_access *access);

#endif
