/* store.h: the shim's writes into the region: find a method's slot, add. */
#ifndef GRPCPROM_STORE_H
#define GRPCPROM_STORE_H

#include <sched.h>
#include <sys/rseq.h>
#include <stdbool.h>
#include <stddef.h>

#include "region.h"

/* Sizes a new region for these settings: fills `plan` and returns its
 * bytes, or 0 (errno EINVAL) when the settings are out of range. */
size_t store_plan(struct grpcprom_header *plan, unsigned bucket_count, unsigned method_capacity);

/* Writes a new region into `base` (zeros, as many bytes as `plan` says),
 * `bounds` being plan->bucket_count bucket bounds: its magic goes last, so
 * a reader that sees it sees the rest. */
void store_format(void *base, const struct grpcprom_header *plan, const double *bounds);

/* Maps a new region of this process's alone, shared with its forked
 * children (anonymous, MAP_SHARED). NULL, with errno set, when it cannot. */
struct grpcprom_header *store_create(const double *bounds, unsigned bucket_count,
                                     unsigned method_capacity);

/* The slot of `path` (len bytes, "/svc/method") on `side`, or NULL when it
 * has none. */
struct grpcprom_method *store_find(struct grpcprom_header *h, enum grpcprom_side side,
                                   const char *path, size_t len);

/* The slot of `path` on `side`, claimed when it has none. NULL when the
 * path cannot have a slot of its own; *why then says which overflow reason
 * applies. */
struct grpcprom_method *store_claim(struct grpcprom_header *h, enum grpcprom_side side,
                                    const char *path, size_t len,
                                    enum grpcprom_overflow_reason *why);

/* Counts calls sent to an overflow slot (none when a method is declared
 * with no room), and says once per reason why. */
void store_overflowed(struct grpcprom_header *h, enum grpcprom_overflow_reason why, uint64_t calls);

/* Counts a call the shim cannot follow; the first of each kind (`said`)
 * says on stderr what happened: `what`, and that such calls are counted
 * only in grpcprom_calls_untracked_total. */
void store_untracked(struct grpcprom_header *h, atomic_bool *said, const char *what);

/* Marks how a method was seen to stream, unless its type is declared. */
void store_mark_type(struct grpcprom_method *m, uint32_t bits);

/* The shard this thread counts in now: the one of the CPU it runs on, read
 * where the kernel keeps it for the thread (glibc's restartable-sequence
 * area: a load, no call). Where that area is not registered, sched_getcpu
 * is asked every 1024 calls (threads seldom move; any shard counts right,
 * the CPU's only keeps threads apart). */
static inline uint32_t store_shard(const struct grpcprom_header *h)
{
    if (__rseq_size > 0) {
        const struct rseq *area =
            (const struct rseq *)((const char *)__builtin_thread_pointer() + __rseq_offset);
        int32_t now = (int32_t)*(const volatile uint32_t *)&area->cpu_id;
        if (now >= 0)
            return (uint32_t)now & (h->shard_count - 1);
    }
    static __thread uint32_t cpu __attribute__((tls_model("initial-exec")));
    static __thread uint32_t uses __attribute__((tls_model("initial-exec")));
    if ((uses++ & 1023) == 0) {
        int now = sched_getcpu();
        cpu = now > 0 ? (uint32_t)now : 0;
    }
    return cpu & (h->shard_count - 1);
}

static inline void store_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

/* Observes `ns` nanoseconds in one of the block's histograms. Inline: a
 * server call's end pays no call for it. */
static inline __attribute__((always_inline)) void store_observe(
    const struct grpcprom_header *h, struct grpcprom_counts *c, enum grpcprom_histogram which,
    uint64_t ns)
{
    unsigned bucket = 0;
    while (bucket < h->bucket_count && ns > h->bucket_bounds_ns[bucket])
        bucket++;
    store_add(which == GRPCPROM_HANDLING ? &c->latency_sum_us : &c->msg_sum_us[which - 1], ns / 1000);
    store_add(&c->buckets[GRPCPROM_HISTOGRAM_START(h, which) + bucket], 1);
}

/* Counts a finished call: its code, and its latency in the histogram. */
static inline void store_handled(const struct grpcprom_header *h, struct grpcprom_counts *c,
                                 int code, uint64_t latency_ns)
{
    if (code < 0 || code >= GRPCPROM_CODES)
        code = 2; /* Unknown, as grpc-go maps codes it does not know */
    store_add(&c->handled[code], 1);
    store_observe(h, c, GRPCPROM_HANDLING, latency_ns);
}

#endif
