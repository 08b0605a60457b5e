/* region_counts.h: for tests and benchmarks that fill a region by hand. */
#ifndef GRPCPROM_TESTS_REGION_COUNTS_H
#define GRPCPROM_TESTS_REGION_COUNTS_H

#include "region.h"

/* Sets a count of slot m, split over its first and last shards, so that
 * a reader shows it only if it sums the shards. */
#define SET(h, m, field, v)                                                                    \
    do {                                                                                       \
        const struct grpcprom_method *m_ = (m);                                                \
        uint64_t v_ = (v);                                                                     \
        atomic_store_explicit(&grpcprom_region_counts(h, m_, 0)->field, v_ / 2,                \
                              memory_order_relaxed);                                           \
        atomic_store_explicit(&grpcprom_region_counts(h, m_, (h)->shard_count - 1)->field,      \
                              v_ - v_ / 2, memory_order_relaxed);                              \
    } while (0)

#endif
