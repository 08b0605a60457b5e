/* ptrmap.c: open addressing with linear probing and tombstones; an entry
 * goes FREE/DEAD -> BUSY (CAS, keys written) -> LIVE (release) -> DEAD. */
#include "ptrmap.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

enum { ENTRY_FREE = 0, ENTRY_BUSY = 1, ENTRY_LIVE = 2, ENTRY_DEAD = 3 };
enum { PROBE_LIMIT = 16 };

static struct ptrmap_entry *entry_at(const struct ptrmap *map, size_t i)
{
    return (struct ptrmap_entry *)(map->entries + (i & map->mask) * map->entry_size);
}

static size_t key_hash(uintptr_t key, uintptr_t key2)
{
    uint64_t x = (uint64_t)key * 0x9e3779b97f4a7c15ull ^ (uint64_t)key2 * 0xc2b2ae3d27d4eb4full;
    return (size_t)(x ^ (x >> 29));
}

int ptrmap_init(struct ptrmap *map, size_t capacity, size_t entry_size)
{
    if (capacity == 0 || (capacity & (capacity - 1)) != 0 || entry_size < sizeof(struct ptrmap_entry))
        return -EINVAL;
    void *mem = mmap(NULL, capacity * entry_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    map->entries = mem;
    map->entry_size = entry_size;
    map->mask = capacity - 1;
    return 0;
}

void ptrmap_clear(struct ptrmap *map)
{
    /* Private anonymous pages read back as zeros: nothing is copied. */
    madvise(map->entries, (map->mask + 1) * map->entry_size, MADV_DONTNEED);
}

struct ptrmap_entry *ptrmap_claim(struct ptrmap *map, uintptr_t key, uintptr_t key2)
{
    size_t start = key_hash(key, key2);
    for (size_t probe = 0; probe < PROBE_LIMIT; probe++) {
        struct ptrmap_entry *e = entry_at(map, start + probe);
        uint32_t state = atomic_load_explicit(&e->state, memory_order_relaxed);
        if (state != ENTRY_FREE && state != ENTRY_DEAD)
            continue;
        if (atomic_compare_exchange_strong(&e->state, &state, ENTRY_BUSY)) {
            e->key = key;
            e->key2 = key2;
            return e;
        }
    }
    return NULL;
}

void ptrmap_publish(struct ptrmap_entry *entry)
{
    atomic_store_explicit(&entry->state, ENTRY_LIVE, memory_order_release);
}

struct ptrmap_entry *ptrmap_find(const struct ptrmap *map, uintptr_t key, uintptr_t key2)
{
    size_t start = key_hash(key, key2);
    for (size_t probe = 0; probe < PROBE_LIMIT; probe++) {
        struct ptrmap_entry *e = entry_at(map, start + probe);
        uint32_t state = atomic_load_explicit(&e->state, memory_order_acquire);
        if (state == ENTRY_FREE)
            return NULL;
        if (state == ENTRY_LIVE && e->key == key && e->key2 == key2)
            return e;
    }
    return NULL;
}

void ptrmap_release(struct ptrmap_entry *entry)
{
    atomic_store_explicit(&entry->state, ENTRY_DEAD, memory_order_release);
}
