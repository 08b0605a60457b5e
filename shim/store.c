/* store.c: claims method slots and adds to counters in the region, without
 * locks or waits (a writer that dies midway, in any process sharing the
 * region, stops no other): a claimer fills the next free slot, then
 * publishes it in the path's index entry by CAS; slots are never given
 * back. */
#include "store.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static uint64_t random_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        seed = (uint64_t)now.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    }
    return seed;
}

/* One shard per CPU that may run a thread at once, as a power of two: the
 * counting threads then rarely write the same cache line. */
static uint32_t shard_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    uint32_t shards = 1;
    while (shards < GRPCPROM_MAX_SHARDS && (long)shards < cpus)
        shards <<= 1;
    return shards;
}

size_t store_plan(struct grpcprom_header *plan, unsigned bucket_count, unsigned method_capacity)
{
    if (bucket_count > GRPCPROM_MAX_BUCKETS || method_capacity == 0 ||
        method_capacity > GRPCPROM_MAX_METHOD_CAPACITY) {
        errno = EINVAL;
        return 0;
    }
    memset(plan, 0, sizeof(*plan));
    return grpcprom_region_plan(plan, method_capacity, bucket_count, shard_count());
}

void store_format(void *base, const struct grpcprom_header *plan, const double *bounds)
{
    struct grpcprom_header *h = base;
    memcpy(h, plan, sizeof(*plan));
    h->layout_version = GRPCPROM_LAYOUT_VERSION;
    h->hash_seed = random_seed();
    h->creator_pid = getpid();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    h->start_time_unix_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    atomic_init(&h->client_method_limit, h->method_capacity);
    for (unsigned i = 0; i < h->bucket_count; i++) {
        h->bucket_bounds[i] = bounds[i];
        h->bucket_bounds_ns[i] = (uint64_t)(bounds[i] * 1e9 + 0.5);
    }
    /* The overflow slots exist from the start; the page shows them once used. */
    for (uint32_t i = 0; i < GRPCPROM_OVERFLOW_SLOTS; i++) {
        uint32_t bits = i % 4;
        enum grpcprom_side side = i < 4 ? GRPCPROM_SERVER : GRPCPROM_CLIENT;
        struct grpcprom_method *m = grpcprom_region_overflow(h, side, bits);
        m->side = side;
        m->path_len = sizeof(GRPCPROM_OVERFLOW_PATH) - 1;
        memcpy(m->path, GRPCPROM_OVERFLOW_PATH, m->path_len);
        atomic_init(&m->type_bits, GRPCPROM_OVERFLOW | GRPCPROM_TYPE_EXACT | bits);
        atomic_init(&m->state, GRPCPROM_SLOT_READY);
    }
    atomic_thread_fence(memory_order_release);
    memcpy(h->magic, GRPCPROM_MAGIC, sizeof(h->magic));
}

struct grpcprom_header *store_create(const double *bounds, unsigned bucket_count,
                                     unsigned method_capacity)
{
    struct grpcprom_header plan;
    size_t size = store_plan(&plan, bucket_count, method_capacity);
    if (size == 0)
        return NULL;
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    store_format(base, &plan, bounds);
    return base;
}

/* FNV-1a from a per-region seed (and the side), then a final mix so the
 * low bits that pick the index entry depend on every byte. */
static uint64_t path_hash(const struct grpcprom_header *h, enum grpcprom_side side, const char *path,
                          size_t len)
{
    uint64_t x = 1469598103934665603ull ^ h->hash_seed ^ (uint64_t)side;
    for (size_t i = 0; i < len; i++)
        x = (x ^ (unsigned char)path[i]) * 1099511628211ull;
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    return x ^ (x >> 27);
}

static bool slot_is(const struct grpcprom_method *m, uint64_t hash, enum grpcprom_side side,
                    const char *path, size_t len)
{
    return m->path_hash == hash && m->side == side && m->path_len == len &&
           memcmp(m->path, path, len) == 0;
}

/* Counts one more client slot against the client limit: false when the
 * limit is reached. Client paths may be chosen by whoever a proxy serves,
 * so they never take the server's whole table. */
static bool client_quota(struct grpcprom_header *h)
{
    uint32_t limit = atomic_load_explicit(&h->client_method_limit, memory_order_relaxed);
    return atomic_load_explicit(&h->client_methods_used, memory_order_relaxed) < limit &&
           atomic_fetch_add_explicit(&h->client_methods_used, 1, memory_order_relaxed) < limit;
}

/* Fills the next free slot with the path, not yet visible to readers; NULL
 * when every slot is taken (or the side's), *why saying which. */
static struct grpcprom_method *take_slot(struct grpcprom_header *h, uint64_t hash,
                                         enum grpcprom_side side, const char *path, size_t len,
                                         enum grpcprom_overflow_reason *why)
{
    *why = GRPCPROM_OVERFLOW_TABLE_FULL;
    if (atomic_load_explicit(&h->methods_used, memory_order_relaxed) >= h->method_capacity)
        return NULL;
    if (side == GRPCPROM_CLIENT && !client_quota(h)) {
        *why = GRPCPROM_OVERFLOW_CLIENT_TABLE_FULL;
        return NULL;
    }
    uint32_t n = atomic_fetch_add_explicit(&h->methods_used, 1, memory_order_relaxed);
    if (n >= h->method_capacity)
        return NULL;
    struct grpcprom_method *m = &grpcprom_region_methods(h)[n];
    m->path_hash = hash;
    m->side = side;
    m->path_len = (uint32_t)len;
    memcpy(m->path, path, len);
    return m;
}

/* Walks the path's index entries to its slot, or to the first empty entry:
 * there it stops, or with `create` publishes a slot it filled. A claimer
 * that loses the entry to the same path uses the winner's slot, and its own
 * stays unpublished: a slot lost per racing thread, at worst. The index is
 * at most half full, so an empty entry is always near. */
static struct grpcprom_method *lookup(struct grpcprom_header *h, enum grpcprom_side side,
                                      const char *path, size_t len, bool create,
                                      enum grpcprom_overflow_reason *why)
{
    uint64_t hash = path_hash(h, side, path, len);
    _Atomic uint32_t *index = grpcprom_region_index(h);
    struct grpcprom_method *slots = grpcprom_region_methods(h);
    struct grpcprom_method *mine = NULL;
    uint32_t mask = h->index_capacity - 1;
    for (uint32_t probe = 0; probe <= mask; probe++) {
        _Atomic uint32_t *entry = &index[(hash + probe) & mask];
        uint32_t v = atomic_load_explicit(entry, memory_order_acquire);
        if (v == 0) {
            if (!create || (mine == NULL && (mine = take_slot(h, hash, side, path, len, why)) == NULL))
                return NULL;
            uint32_t number = (uint32_t)(mine - slots) + 1;
            if (atomic_compare_exchange_strong_explicit(entry, &v, number, memory_order_acq_rel,
                                                        memory_order_acquire)) {
                atomic_store_explicit(&mine->state, GRPCPROM_SLOT_READY, memory_order_release);
                return mine;
            }
        }
        if (v > h->method_capacity) /* a damaged region: nothing there is trusted */
            return NULL;
        if (slot_is(&slots[v - 1], hash, side, path, len))
            return &slots[v - 1];
    }
    return NULL;
}

struct grpcprom_method *store_find(struct grpcprom_header *h, enum grpcprom_side side,
                                   const char *path, size_t len)
{
    if (len == 0 || len > GRPCPROM_PATH_MAX)
        return NULL;
    enum grpcprom_overflow_reason unused;
    return lookup(h, side, path, len, false, &unused);
}

struct grpcprom_method *store_claim(struct grpcprom_header *h, enum grpcprom_side side,
                                    const char *path, size_t len,
                                    enum grpcprom_overflow_reason *why)
{
    static const char overflow_path[] = GRPCPROM_OVERFLOW_PATH;
    if (len > GRPCPROM_PATH_MAX) {
        *why = GRPCPROM_OVERFLOW_PATH_TOO_LONG;
        return NULL;
    }
    if (len == 0 || !grpcprom_label_text_ok(path, len) ||
        (len == sizeof(overflow_path) - 1 && memcmp(path, overflow_path, len) == 0)) {
        *why = GRPCPROM_OVERFLOW_INVALID_PATH;
        return NULL;
    }
    *why = GRPCPROM_OVERFLOW_TABLE_FULL;
    return lookup(h, side, path, len, true, why);
}

void store_overflowed(struct grpcprom_header *h, enum grpcprom_overflow_reason why, uint64_t calls)
{
    static atomic_bool warned[GRPCPROM_OVERFLOW_REASONS];
    static const char *const what[GRPCPROM_OVERFLOW_REASONS] = {
        "a call's path is not valid UTF-8 (or holds a NUL byte)",
        "a call's path is longer than 1024 bytes",
        "the method table is full (raise GRPCPROM_MAX_METHODS)",
        NULL, /* a cancelled call to an unseen path is ordinary */
        "the process calls more methods as a client than GRPCPROM_MAX_CLIENT_METHODS",
    };
    store_add(&h->overflow_calls[why], calls);
    if (what[why] && !atomic_exchange_explicit(&warned[why], true, memory_order_relaxed))
        log_msg(LOG_WARN, "%s: such calls are counted under grpc_service=\"_OTHER\" and in "
                          "grpcprom_overflow_calls_total{reason=\"%s\"}",
                what[why], grpcprom_overflow_reason_names[why]);
}

void store_untracked(struct grpcprom_header *h, atomic_bool *said, const char *what)
{
    store_add(&h->calls_untracked, 1);
    if (!atomic_exchange_explicit(said, true, memory_order_relaxed))
        log_msg(LOG_WARN, "%s: such calls are counted only in grpcprom_calls_untracked_total", what);
}

void store_mark_type(struct grpcprom_method *m, uint32_t bits)
{
    uint32_t now = atomic_load_explicit(&m->type_bits, memory_order_relaxed);
    if (now & GRPCPROM_TYPE_EXACT)
        bits &= ~(GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS);
    if ((now & bits) != bits)
        atomic_fetch_or_explicit(&m->type_bits, bits, memory_order_relaxed);
}

