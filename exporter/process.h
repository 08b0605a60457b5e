/* process.h: the process collector's families of client_golang, for the
 * process that serves the page. */
#ifndef GRPCPROM_PROCESS_H
#define GRPCPROM_PROCESS_H

#include "render.h"

/* Appends process_cpu_seconds_total, process_max_fds, process_open_fds,
 * process_resident_memory_bytes, process_start_time_seconds,
 * process_virtual_memory_bytes and process_virtual_memory_max_bytes of
 * this process, with client_golang's names, HELP texts and types, read
 * from /proc now. A family whose source cannot be read is left out, as
 * client_golang leaves it out. 0, or -ENOMEM. */
int process_render(struct grpcprom_buf *out);

#endif
