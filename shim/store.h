/* store.h: the shim's writes into the region: find a method's slot, add. */
#ifndef GRPCPROM_STORE_H
#define GRPCPROM_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "region.h"

/* Maps a new region shared with forked children (anonymous, MAP_SHARED).
 * Returns NULL, with errno set, when it cannot be mapped. */
struct grpcprom_header *store_create(const double *bounds, unsigned bucket_count,
                                     unsigned method_capacity);

/* The slot for `path` (len bytes, "/svc/method"). With `create`, claims a
 * free slot when the path has none; NULL when absent or the table is full. */
struct grpcprom_method *store_method(struct grpcprom_header *h, const char *path, size_t len,
                                     bool create);

/* Marks how a method was seen to stream, unless its type is declared. */
void store_mark_type(struct grpcprom_method *m, uint32_t bits);

/* Counts a finished call: its code, and its latency in the histogram. */
void store_handled(const struct grpcprom_header *h, struct grpcprom_method *m, int code,
                   uint64_t latency_ns);

static inline void store_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

#endif
