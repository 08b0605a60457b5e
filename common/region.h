/* region.h: the layout of the shared-memory region that holds every count.
 *
 * Writers (the shim, in every process and forked worker that maps the region)
 * only add with relaxed atomics; readers (the page, the grpcprom command) only
 * read. The region holds no pointers and no per-process state, so a reader in
 * another process, or after the writer crashed, sees everything it needs in
 * the header. Buckets are stored per bucket (not cumulative) and summed at
 * render time, so +Inf always equals _count in one rendering. */
#ifndef GRPCPROM_REGION_H
#define GRPCPROM_REGION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define GRPCPROM_MAGIC "GRPCPRM1"
#define GRPCPROM_LAYOUT_VERSION 1u
#define GRPCPROM_MAX_BUCKETS 30   /* finite bounds; one more slot for +Inf */
#define GRPCPROM_PATH_MAX 192      /* "/service/method", NUL included */
#define GRPCPROM_CODES 17

/* grpc_type is derived from what a method has been seen to do. */
enum grpcprom_type_bits {
    GRPCPROM_CLIENT_STREAMS = 1u << 0, /* more than one request, or NONE payload */
    GRPCPROM_SERVER_STREAMS = 1u << 1, /* a message sent apart from the status */
    GRPCPROM_TYPE_EXACT = 1u << 2,     /* both bits above come from a declaration */
    GRPCPROM_REGISTERED = 1u << 3,     /* pre-initialised: rendered before its first call */
};

enum grpcprom_slot_state { GRPCPROM_SLOT_EMPTY = 0, GRPCPROM_SLOT_INIT = 1, GRPCPROM_SLOT_READY = 2 };

/* One method's counts. */
struct grpcprom_method {
    _Atomic uint32_t state;         /* grpcprom_slot_state: readers skip all but READY */
    _Atomic uint32_t type_bits;     /* grpcprom_type_bits */
    char path[GRPCPROM_PATH_MAX];   /* "/pkg.Service/Method", written before READY */
    _Atomic uint64_t started;
    _Atomic uint64_t msg_received;
    _Atomic uint64_t msg_sent;
    _Atomic uint64_t handled[GRPCPROM_CODES];
    _Atomic uint64_t latency_sum_ns;
    _Atomic uint64_t buckets[GRPCPROM_MAX_BUCKETS + 1]; /* per bucket; last is +Inf */
};

struct grpcprom_header {
    char magic[8];                  /* GRPCPROM_MAGIC, written last by the creator */
    uint32_t layout_version;
    uint32_t header_size;           /* sizeof(struct grpcprom_header) */
    uint64_t region_size;           /* header + method_capacity slots */
    uint32_t method_size;           /* sizeof(struct grpcprom_method) */
    uint32_t method_capacity;
    uint32_t bucket_count;          /* finite bounds in use, <= GRPCPROM_MAX_BUCKETS */
    uint32_t reserved;
    int64_t creator_pid;
    int64_t start_time_unix_ns;
    double bucket_bounds[GRPCPROM_MAX_BUCKETS];        /* seconds, increasing */
    uint64_t bucket_bounds_ns[GRPCPROM_MAX_BUCKETS];   /* the same, in nanoseconds */
    _Atomic uint64_t methods_dropped;   /* calls of new methods refused: table full */
    _Atomic uint64_t unknown_methods;   /* calls to paths nobody serves (Unimplemented) */
    _Atomic uint64_t calls_untracked;   /* calls the shim could not follow */
    uint8_t pad[64];
};

_Static_assert(sizeof(struct grpcprom_method) % 8 == 0, "method slot alignment");
_Static_assert(offsetof(struct grpcprom_method, started) % 8 == 0, "counter alignment");
_Static_assert(offsetof(struct grpcprom_header, methods_dropped) % 8 == 0, "counter alignment");

/* Where the method slots start: the header rounded up to a cache line. */
#define GRPCPROM_HEADER_SPAN ((sizeof(struct grpcprom_header) + 63) / 64 * 64)

static inline struct grpcprom_method *grpcprom_region_methods(const struct grpcprom_header *h)
{
    return (struct grpcprom_method *)((char *)h + h->header_size);
}

/* Go's names for the 17 status codes, indexed by code. */
extern const char *const grpcprom_code_names[GRPCPROM_CODES];

/* The grpc_type label a method's bits stand for. */
const char *grpcprom_type_label(uint32_t type_bits);

/* Checks a mapped region before anything in it is trusted: 0 when the header
 * is sane and fits in `size` bytes, -EINVAL otherwise. */
int grpcprom_region_check(const struct grpcprom_header *h, size_t size);

#endif
