/* ptrmap.c: open addressing with linear probing and tombstones; an entry
 * goes FREE/DEAD -> BUSY (CAS, key written) -> LIVE (release) -> DEAD. */
#include "ptrmap.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

enum { ENTRY_FREE = 0, ENTRY_BUSY = 1, ENTRY_LIVE = 2, ENTRY_DEAD = 3 };

#define HOLDERS(word) ((uint32_t)(word))
#define NEXT_GENERATION(word) ((((word) >> 32) + 1) << 32)

static struct ptrmap_entry *entry_at(const struct ptrmap *map, size_t i)
{
    return (struct ptrmap_entry *)(map->entries + (i & map->mask) * map->entry_size);
}

static size_t key_hash(uintptr_t key)
{
    uint64_t x = (uint64_t)key * 0x9e3779b97f4a7c15ull;
    return (size_t)(x ^ (x >> 29));
}

int ptrmap_init(struct ptrmap *map, size_t limit, size_t entry_size)
{
    if (limit == 0 || limit > SIZE_MAX / 4 / entry_size || entry_size < sizeof(struct ptrmap_entry))
        return -EINVAL;
    size_t capacity = 2;
    while (capacity < 2 * limit)
        capacity <<= 1;
    void *mem = mmap(NULL, capacity * entry_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    map->entries = mem;
    map->entry_size = entry_size;
    map->mask = capacity - 1;
    map->limit = limit;
    atomic_init(&map->claimed, 0);
    atomic_init(&map->max_probe, 0);
    return 0;
}

void ptrmap_clear(struct ptrmap *map)
{
    /* Private anonymous pages read back as zeros: nothing is copied. */
    madvise(map->entries, (map->mask + 1) * map->entry_size, MADV_DONTNEED);
    atomic_store(&map->claimed, 0);
    atomic_store(&map->max_probe, 0);
}

struct ptrmap_entry *ptrmap_live_entry(const struct ptrmap *map, size_t i)
{
    struct ptrmap_entry *e = entry_at(map, i);
    return atomic_load_explicit(&e->state, memory_order_acquire) == ENTRY_LIVE ? e : NULL;
}

size_t ptrmap_index(const struct ptrmap *map, const struct ptrmap_entry *entry)
{
    return (size_t)((const char *)entry - map->entries) / map->entry_size;
}

struct ptrmap_entry *ptrmap_claim(struct ptrmap *map, uintptr_t key)
{
    if (atomic_fetch_add_explicit(&map->claimed, 1, memory_order_relaxed) >= map->limit) {
        atomic_fetch_sub_explicit(&map->claimed, 1, memory_order_relaxed);
        return NULL;
    }
    /* At most half the entries are taken, so this ends within a short run. */
    size_t start = key_hash(key);
    for (size_t probe = 0;; probe++) {
        struct ptrmap_entry *e = entry_at(map, start + probe);
        uint32_t state = atomic_load_explicit(&e->state, memory_order_relaxed);
        if (state != ENTRY_FREE && state != ENTRY_DEAD)
            continue;
        if (!atomic_compare_exchange_strong(&e->state, &state, ENTRY_BUSY))
            continue;
        atomic_store_explicit(&e->key, key, memory_order_relaxed);
        size_t far = atomic_load_explicit(&map->max_probe, memory_order_relaxed);
        while (probe > far &&
               !atomic_compare_exchange_weak_explicit(&map->max_probe, &far, probe,
                                                      memory_order_relaxed, memory_order_relaxed))
            ;
        return e;
    }
}

void ptrmap_publish(struct ptrmap_entry *entry)
{
    uint64_t word = atomic_load_explicit(&entry->word, memory_order_relaxed);
    atomic_store_explicit(&entry->word, (word & ~(uint64_t)UINT32_MAX) | 1, memory_order_release);
    atomic_store_explicit(&entry->state, ENTRY_LIVE, memory_order_release);
}

/* A key is published after its claim raised max_probe, and whoever looks
 * it up learnt of the key after that: the bound never hides it. */
struct ptrmap_entry *ptrmap_find(const struct ptrmap *map, uintptr_t key, uint64_t *word)
{
    size_t start = key_hash(key);
    size_t far = atomic_load_explicit(&map->max_probe, memory_order_relaxed);
    for (size_t probe = 0; probe <= far; probe++) {
        struct ptrmap_entry *e = entry_at(map, start + probe);
        uint32_t state = atomic_load_explicit(&e->state, memory_order_acquire);
        if (state == ENTRY_FREE)
            return NULL;
        if (state != ENTRY_LIVE)
            continue;
        uint64_t w = atomic_load_explicit(&e->word, memory_order_acquire);
        if (HOLDERS(w) == 0 || atomic_load_explicit(&e->key, memory_order_relaxed) != key)
            continue;
        *word = w;
        return e;
    }
    return NULL;
}

bool ptrmap_hold(struct ptrmap_entry *entry, uint64_t word)
{
    uint64_t now = word;
    while (HOLDERS(now) > 0 && (now >> 32) == (word >> 32)) {
        if (atomic_compare_exchange_weak_explicit(&entry->word, &now, now + 1,
                                                  memory_order_acquire, memory_order_relaxed))
            return true;
    }
    return false;
}

bool ptrmap_drop(struct ptrmap_entry *entry)
{
    uint64_t now = atomic_load_explicit(&entry->word, memory_order_relaxed);
    for (;;) {
        if (HOLDERS(now) == 0)
            return false; /* not held: nothing to drop */
        bool last = HOLDERS(now) == 1;
        uint64_t next = last ? NEXT_GENERATION(now) : now - 1;
        if (atomic_compare_exchange_weak_explicit(&entry->word, &now, next,
                                                  memory_order_acq_rel, memory_order_relaxed))
            return last;
    }
}

bool ptrmap_evict(struct ptrmap_entry *entry, uint64_t word)
{
    return HOLDERS(word) > 0 &&
           atomic_compare_exchange_strong_explicit(&entry->word, &word, NEXT_GENERATION(word),
                                                   memory_order_acq_rel, memory_order_relaxed);
}

void ptrmap_release(struct ptrmap *map, struct ptrmap_entry *entry)
{
    atomic_store_explicit(&entry->state, ENTRY_DEAD, memory_order_release);
    atomic_fetch_sub_explicit(&map->claimed, 1, memory_order_relaxed);
}
