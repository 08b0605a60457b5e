/* ptrmap.c: open addressing with linear probing and tombstones; an entry
 * goes FREE/DEAD -> BUSY (CAS, key written) -> LIVE (release) -> DEAD. */
#include "ptrmap.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

enum { ENTRY_FREE = 0, ENTRY_BUSY = 1, ENTRY_LIVE = 2, ENTRY_DEAD = 3 };

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

struct ptrmap_entry *ptrmap_live_entry(const struct ptrmap *map, size_t i)
{
    struct ptrmap_entry *e = entry_at(map, i);
    return atomic_load_explicit(&e->state, memory_order_acquire) == ENTRY_LIVE ? e : NULL;
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
    atomic_store_explicit(&entry->state, ENTRY_LIVE, memory_order_release);
}

/* A key is published after its claim raised max_probe, and whoever looks
 * it up learnt of the key after that: the bound never hides it. */
struct ptrmap_entry *ptrmap_find(const struct ptrmap *map, uintptr_t key)
{
    size_t start = key_hash(key);
    size_t far = atomic_load_explicit(&map->max_probe, memory_order_relaxed);
    for (size_t probe = 0; probe <= far; probe++) {
        struct ptrmap_entry *e = entry_at(map, start + probe);
        uint32_t state = atomic_load_explicit(&e->state, memory_order_acquire);
        if (state == ENTRY_FREE)
            return NULL;
        if (state == ENTRY_LIVE && atomic_load_explicit(&e->key, memory_order_relaxed) == key)
            return e;
    }
    return NULL;
}

void ptrmap_release(struct ptrmap *map, struct ptrmap_entry *entry)
{
    atomic_store_explicit(&entry->state, ENTRY_DEAD, memory_order_release);
    atomic_fetch_sub_explicit(&map->claimed, 1, memory_order_relaxed);
}

bool ptrmap_take(struct ptrmap *map, struct ptrmap_entry *entry)
{
    uint32_t live = ENTRY_LIVE;
    if (!atomic_compare_exchange_strong_explicit(&entry->state, &live, ENTRY_DEAD,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return false;
    atomic_fetch_sub_explicit(&map->claimed, 1, memory_order_relaxed);
    return true;
}

/* No key is 0 (a null pointer is never looked up): the entry stays LIVE,
 * so no claim reuses it, and no lookup matches it. */
void ptrmap_hide(struct ptrmap_entry *entry)
{
    atomic_store_explicit(&entry->key, 0, memory_order_release);
}
