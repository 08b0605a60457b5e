/* store.h: the shim's writes into the region: find a method's slot, add. */
#ifndef GRPCPROM_STORE_H
#define GRPCPROM_STORE_H

#include <sched.h>
#include <stdbool.h>
#include <stddef.h>

#include "region.h"

/* Maps a new region shared with forked children (anonymous, MAP_SHARED).
 * Returns NULL, with errno set, when it cannot be mapped. */
struct grpcprom_header *store_create(const double *bounds, unsigned bucket_count,
                                     unsigned method_capacity);

/* The slot of `path` (len bytes, "/svc/method"), or NULL when it has none. */
struct grpcprom_method *store_find(struct grpcprom_header *h, const char *path, size_t len);

/* The slot of `path`, claimed when it has none. NULL when the path cannot
 * have a slot of its own; *why then says which overflow reason applies. */
struct grpcprom_method *store_claim(struct grpcprom_header *h, const char *path, size_t len,
                                    enum grpcprom_overflow_reason *why);

/* Counts calls sent to an overflow slot (none when a method is declared
 * with no room), and says once per reason why. */
void store_overflowed(struct grpcprom_header *h, enum grpcprom_overflow_reason why, uint64_t calls);

/* Marks how a method was seen to stream, unless its type is declared. */
void store_mark_type(struct grpcprom_method *m, uint32_t bits);

/* The shard this thread counts in now: the CPU's it runs on (read from
 * the kernel's restartable-sequence area, no system call). */
static inline uint32_t store_shard(const struct grpcprom_header *h)
{
    int cpu = sched_getcpu();
    return (uint32_t)(cpu > 0 ? cpu : 0) & (h->shard_count - 1);
}

/* Counts a finished call: its code, and its latency in the histogram. */
void store_handled(const struct grpcprom_header *h, struct grpcprom_counts *c, int code,
                   uint64_t latency_ns);

static inline void store_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

#endif
