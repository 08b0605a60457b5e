/* page.h: the embedded HTTP page that serves the region as /metrics. */
#ifndef GRPCPROM_PAGE_H
#define GRPCPROM_PAGE_H

#include "region.h"

/* Starts civetweb on `listen` ("ip:port"); 0, or -1 after logging why.
 * The host's signal mask and SIGPIPE disposition come out unchanged. */
int page_start(const char *listen, const struct grpcprom_header *region);

#endif
