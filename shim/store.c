/* store.c: claims method slots and adds to counters in the region, without
 * locks: a slot goes EMPTY -> INIT by CAS, gets its path, then READY. */
#include "store.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct grpcprom_header *store_create(const double *bounds, unsigned bucket_count,
                                     unsigned method_capacity)
{
    if (bucket_count > GRPCPROM_MAX_BUCKETS || method_capacity == 0) {
        errno = EINVAL;
        return NULL;
    }
    size_t size = GRPCPROM_HEADER_SPAN + (size_t)method_capacity * sizeof(struct grpcprom_method);
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    struct grpcprom_header *h = base;
    h->layout_version = GRPCPROM_LAYOUT_VERSION;
    h->header_size = GRPCPROM_HEADER_SPAN;
    h->region_size = size;
    h->method_size = sizeof(struct grpcprom_method);
    h->method_capacity = method_capacity;
    h->bucket_count = bucket_count;
    h->creator_pid = getpid();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    h->start_time_unix_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    for (unsigned i = 0; i < bucket_count; i++) {
        h->bucket_bounds[i] = bounds[i];
        h->bucket_bounds_ns[i] = (uint64_t)(bounds[i] * 1e9 + 0.5);
    }
    atomic_thread_fence(memory_order_release);
    memcpy(h->magic, GRPCPROM_MAGIC, sizeof(h->magic));
    return h;
}

static uint64_t path_hash(const char *path, size_t len)
{
    uint64_t hash = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ (unsigned char)path[i]) * 1099511628211ull;
    return hash;
}

static bool same_path(const struct grpcprom_method *m, const char *path, size_t len)
{
    return memcmp(m->path, path, len) == 0 && m->path[len] == '\0';
}

struct grpcprom_method *store_method(struct grpcprom_header *h, const char *path, size_t len,
                                     bool create)
{
    if (len == 0 || len >= GRPCPROM_PATH_MAX)
        return NULL;
    struct grpcprom_method *slots = grpcprom_region_methods(h);
    uint32_t capacity = h->method_capacity;
    uint32_t start = (uint32_t)(path_hash(path, len) % capacity);
    for (uint32_t probe = 0; probe < capacity; probe++) {
        struct grpcprom_method *m = &slots[(start + probe) % capacity];
        uint32_t state = atomic_load_explicit(&m->state, memory_order_acquire);
        if (state == GRPCPROM_SLOT_EMPTY) {
            if (!create)
                return NULL;
            uint32_t expected = GRPCPROM_SLOT_EMPTY;
            if (atomic_compare_exchange_strong(&m->state, &expected, GRPCPROM_SLOT_INIT)) {
                memcpy(m->path, path, len);
                m->path[len] = '\0';
                atomic_store_explicit(&m->state, GRPCPROM_SLOT_READY, memory_order_release);
                return m;
            }
            state = expected;
        }
        /* Another thread is writing this slot's path: it takes microseconds. */
        while (state == GRPCPROM_SLOT_INIT) {
            sched_yield();
            state = atomic_load_explicit(&m->state, memory_order_acquire);
        }
        if (same_path(m, path, len))
            return m;
    }
    if (create)
        store_add(&h->methods_dropped, 1);
    return NULL;
}

void store_mark_type(struct grpcprom_method *m, uint32_t bits)
{
    uint32_t now = atomic_load_explicit(&m->type_bits, memory_order_relaxed);
    if (now & GRPCPROM_TYPE_EXACT)
        bits &= ~(GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS);
    if ((now & bits) != bits)
        atomic_fetch_or_explicit(&m->type_bits, bits, memory_order_relaxed);
}

void store_handled(const struct grpcprom_header *h, struct grpcprom_method *m, int code,
                   uint64_t latency_ns)
{
    if (code < 0 || code >= GRPCPROM_CODES)
        code = 2; /* Unknown, as grpc-go maps codes it does not know */
    unsigned bucket = 0;
    while (bucket < h->bucket_count && latency_ns > h->bucket_bounds_ns[bucket])
        bucket++;
    store_add(&m->handled[code], 1);
    store_add(&m->latency_sum_ns, latency_ns);
    store_add(&m->buckets[bucket], 1);
}
