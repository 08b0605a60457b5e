/* signals.h: keeps the host's signal dispositions out of the page's reach. */
#ifndef GRPCPROM_SIGNALS_H
#define GRPCPROM_SIGNALS_H

#include <stdbool.h>

/* While on, threads this thread creates are page threads: their calls to
 * change SIGPIPE's disposition (civetweb ignores it process-wide in every
 * thread it starts) are answered but not applied. */
void signals_mark_new_threads(bool on);

#endif
