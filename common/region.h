/* region.h: the layout of the shared-memory region that holds every count.
 *
 * Writers (the shim, in every process and forked worker that maps the region)
 * only add with relaxed atomics; readers (the page, the grpcprom command) only
 * read. The region holds no pointers and no per-process state, so a reader in
 * another process, or after the writer crashed, sees everything it needs in
 * the header. Buckets are stored per bucket (not cumulative) and summed at
 * render time, so +Inf always equals _count in one rendering.
 *
 * After the header comes a hash index of paths (slot number + 1, 0 when
 * empty), at most half full, then the method slots, handed out in order, then
 * one overflow slot per grpc_type for calls that cannot have a series of
 * their own, then the counts: for each slot, one block per shard. A writer
 * adds to the shard of the CPU it runs on, so threads counting the same
 * method at once write different cache lines; a reader sums the shards. A
 * reader walks the slots in use and the overflow slots; it never needs the
 * index. */
#ifndef GRPCPROM_REGION_H
#define GRPCPROM_REGION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define GRPCPROM_MAGIC "GRPCPRM1"
#define GRPCPROM_LAYOUT_VERSION 6u
#define GRPCPROM_MAX_BUCKETS 30   /* finite bounds; one more slot for +Inf */
#define GRPCPROM_PATH_MAX 1024     /* longest :path that becomes a series */
#define GRPCPROM_CODES 17
#define GRPCPROM_OVERFLOW_SLOTS 8  /* one per grpc_type, on each side */
#define GRPCPROM_OVERFLOW_PATH "/_OTHER/_OTHER"
#define GRPCPROM_MAX_METHOD_CAPACITY (UINT32_MAX / 4)
#define GRPCPROM_MAX_BUCKET_BOUND 1e9  /* seconds: about 31 years, still exact in nanoseconds */
#define GRPCPROM_MAX_SHARDS 16     /* a power of two */

/* grpc_type is derived from what a method has been seen to do. */
enum grpcprom_type_bits {
    GRPCPROM_CLIENT_STREAMS = 1u << 0, /* more than one request, or NONE payload */
    GRPCPROM_SERVER_STREAMS = 1u << 1, /* a message sent apart from the status */
    GRPCPROM_TYPE_EXACT = 1u << 2,     /* both bits above come from a declaration */
    GRPCPROM_REGISTERED = 1u << 3,     /* pre-initialised: rendered before its first call */
    GRPCPROM_OVERFLOW = 1u << 4,       /* an overflow slot: calls of no series of their own */
};

/* Whose calls a slot counts: a process's server calls, or the calls it
 * makes as a client. One path may have a slot on each side. */
enum grpcprom_side { GRPCPROM_SERVER = 0, GRPCPROM_CLIENT = 1 };

/* The histograms of a block of counts: the call's latency (both sides),
 * and a client stream's per-message send and receive times. */
enum grpcprom_histogram { GRPCPROM_HANDLING, GRPCPROM_MSG_SEND, GRPCPROM_MSG_RECV, GRPCPROM_HISTOGRAMS };

/* Why a call was counted in an overflow slot. */
enum grpcprom_overflow_reason {
    GRPCPROM_OVERFLOW_INVALID_PATH,   /* not UTF-8, a NUL byte, or the overflow's own path */
    GRPCPROM_OVERFLOW_PATH_TOO_LONG,  /* longer than GRPCPROM_PATH_MAX */
    GRPCPROM_OVERFLOW_TABLE_FULL,     /* no free method slot */
    GRPCPROM_OVERFLOW_UNANSWERED,     /* a new path whose call ended before the server answered */
    GRPCPROM_OVERFLOW_CLIENT_TABLE_FULL, /* a new client path beyond client_method_limit */
    GRPCPROM_OVERFLOW_REASONS
};

/* A slot is READY once published; a slot filled by a claimer that lost its
 * path to another stays EMPTY, unused. */
enum grpcprom_slot_state { GRPCPROM_SLOT_EMPTY = 0, GRPCPROM_SLOT_READY = 2 };

/* One method: what it is. Its counts are in its shards' blocks. */
struct grpcprom_method {
    _Atomic uint32_t state;         /* grpcprom_slot_state: readers skip all but READY */
    _Atomic uint32_t type_bits;     /* grpcprom_type_bits */
    uint64_t path_hash;             /* written before READY, like the path */
    uint32_t path_len;
    uint32_t side;                  /* grpcprom_side, written before READY */
    char path[GRPCPROM_PATH_MAX];   /* "/pkg.Service/Method", path_len bytes, no NUL */
} __attribute__((aligned(64)));

/* One method's counts in one shard, on whole cache lines: a block is
 * counts_size bytes (see the header), with bucket_count + 1 buckets per
 * histogram: the handling histogram's first, then the send and receive
 * ones (grpcprom_histogram; a server slot leaves those two at 0). */
struct grpcprom_counts {
    _Atomic uint64_t started;
    _Atomic uint64_t msg_received;
    _Atomic uint64_t msg_sent;
    _Atomic uint64_t handled[GRPCPROM_CODES];
    _Atomic uint64_t latency_sum_us; /* microseconds: wraps after 584,000 years of calls */
    _Atomic uint64_t msg_sum_us[2];  /* the send and receive histograms' sums */
    _Atomic uint64_t buckets[GRPCPROM_HISTOGRAMS * (GRPCPROM_MAX_BUCKETS + 1)]; /* per bucket */
};

/* A method's counts summed over its shards, as a reader sees them. */
struct grpcprom_totals {
    uint64_t started, msg_received, msg_sent;
    uint64_t handled[GRPCPROM_CODES];
    uint64_t latency_sum_us;
    uint64_t msg_sum_us[2];
    uint64_t buckets[GRPCPROM_HISTOGRAMS * (GRPCPROM_MAX_BUCKETS + 1)];
};

/* Where histogram `which` starts in a block's buckets (or a totals'). */
#define GRPCPROM_HISTOGRAM_START(h, which) ((size_t)(which) * ((h)->bucket_count + 1))

struct grpcprom_header {
    char magic[8];                  /* GRPCPROM_MAGIC, written last by the creator */
    uint32_t layout_version;
    uint32_t header_size;           /* sizeof(struct grpcprom_header), rounded to 64 */
    uint64_t region_size;           /* everything below, in bytes */
    uint32_t method_size;           /* sizeof(struct grpcprom_method) */
    uint32_t method_capacity;       /* method slots, overflow slots not included */
    uint32_t index_capacity;        /* a power of two, at least 2 * method_capacity */
    uint32_t bucket_count;          /* finite bounds in use, <= GRPCPROM_MAX_BUCKETS */
    uint64_t index_offset;          /* from the start of the region */
    uint64_t methods_offset;        /* method slots, then the overflow slots */
    uint64_t counts_offset;         /* every slot's blocks of counts, shard by shard */
    uint32_t shard_count;           /* a power of two, at most GRPCPROM_MAX_SHARDS */
    uint32_t counts_size;           /* bytes of one block of counts, a multiple of 64 */
    uint64_t hash_seed;             /* keys the path hash, so clients cannot aim collisions */
    int64_t creator_pid;
    int64_t start_time_unix_ns;
    double bucket_bounds[GRPCPROM_MAX_BUCKETS];        /* seconds, increasing */
    uint64_t bucket_bounds_ns[GRPCPROM_MAX_BUCKETS];   /* the same, in nanoseconds */
    _Atomic uint32_t methods_used;  /* slots handed out; may run past the capacity */
    _Atomic int32_t page_pid;       /* the process serving the page of this region, 0: none */
    _Atomic uint32_t client_method_limit; /* slots client paths may take, of method_capacity */
    _Atomic uint32_t client_methods_used; /* slots client paths took; may run past the limit */
    char page_listen[64];           /* where it serves ("ip:port"), written before page_pid */
    char grpc_version[24];          /* the libgrpc core the writers count (grpc_version_string) */
    char counting_mode[16];         /* how they count: "internals" or "public_api" */
    _Atomic uint64_t unknown_methods;   /* calls to paths nobody serves (Unimplemented) */
    _Atomic uint64_t calls_untracked;   /* calls the shim could not follow */
    _Atomic uint64_t overflow_calls[GRPCPROM_OVERFLOW_REASONS];
} __attribute__((aligned(64)));

_Static_assert(sizeof(struct grpcprom_method) % 64 == 0, "method slots fill cache lines");
_Static_assert(sizeof(struct grpcprom_counts) % 8 == 0, "counter alignment");
_Static_assert(offsetof(struct grpcprom_header, unknown_methods) % 8 == 0, "counter alignment");
_Static_assert(sizeof(struct grpcprom_header) % 64 == 0, "header fills cache lines");

static inline _Atomic uint32_t *grpcprom_region_index(const struct grpcprom_header *h)
{
    return (_Atomic uint32_t *)((char *)h + h->index_offset);
}

static inline struct grpcprom_method *grpcprom_region_methods(const struct grpcprom_header *h)
{
    return (struct grpcprom_method *)((char *)h + h->methods_offset);
}

/* The overflow slot of `side` for calls that streamed as `type_bits` says. */
static inline struct grpcprom_method *grpcprom_region_overflow(const struct grpcprom_header *h,
                                                               enum grpcprom_side side,
                                                               uint32_t type_bits)
{
    return grpcprom_region_methods(h) + h->method_capacity + (side == GRPCPROM_CLIENT ? 4 : 0) +
           (type_bits & (GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS));
}

/* The block of counts of slot `m` in shard `shard`. */
static inline struct grpcprom_counts *grpcprom_region_counts(const struct grpcprom_header *h,
                                                             const struct grpcprom_method *m,
                                                             uint32_t shard)
{
    size_t slot = (size_t)(m - grpcprom_region_methods(h));
    return (struct grpcprom_counts *)((char *)h + h->counts_offset +
                                      (slot * h->shard_count + shard) * h->counts_size);
}

/* Sums a slot's counts over its shards. */
void grpcprom_region_sum(const struct grpcprom_header *h, const struct grpcprom_method *m,
                         struct grpcprom_totals *out);

/* The method slots in use, never more than the capacity. */
static inline uint32_t grpcprom_region_methods_used(const struct grpcprom_header *h)
{
    uint32_t used = atomic_load_explicit(&h->methods_used, memory_order_acquire);
    return used < h->method_capacity ? used : h->method_capacity;
}

/* Sizes a region for `method_capacity` methods, `bucket_count` buckets and
 * `shard_count` shards: sets the capacities, sizes and offsets of `h`,
 * returns the bytes it needs. */
size_t grpcprom_region_plan(struct grpcprom_header *h, uint32_t method_capacity,
                            uint32_t bucket_count, uint32_t shard_count);

/* Go's names for the 17 status codes, indexed by code. */
extern const char *const grpcprom_code_names[GRPCPROM_CODES];

/* The reason label of each overflow reason. */
extern const char *const grpcprom_overflow_reason_names[GRPCPROM_OVERFLOW_REASONS];

/* The grpc_type label a method's bits stand for. */
const char *grpcprom_type_label(uint32_t type_bits);

/* True when the n bytes are UTF-8 without a NUL byte: what a label value
 * may hold, and what a C string can carry. */
int grpcprom_label_text_ok(const char *s, size_t n);

/* Checks a mapped region before anything in it is trusted: 0 when the header
 * is sane and fits in `size` bytes, -EINVAL otherwise. */
int grpcprom_region_check(const struct grpcprom_header *h, size_t size);

#endif
