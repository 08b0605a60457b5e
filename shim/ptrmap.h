/* ptrmap.h: a fixed-size, lock-free map from a pair of pointers to an entry,
 * for the shim's per-call and per-batch records. Probing is bounded, so a
 * lookup of a key that is absent (any client call, any completion that is
 * not ours) costs a few compares, and a full map refuses rather than waits. */
#ifndef GRPCPROM_PTRMAP_H
#define GRPCPROM_PTRMAP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Every entry type starts with this. */
struct ptrmap_entry {
    _Atomic uint32_t state;
    uint32_t pad;
    uintptr_t key;
    uintptr_t key2;
};

struct ptrmap {
    char *entries;
    size_t entry_size;
    size_t mask;        /* capacity - 1; capacity is a power of two */
};

/* Maps zeroed memory for `capacity` (a power of two) entries; 0 or -errno. */
int ptrmap_init(struct ptrmap *map, size_t capacity, size_t entry_size);

/* Drops every entry (a forked child's copy describes its parent's calls). */
void ptrmap_clear(struct ptrmap *map);

/* Claims an entry for the key; the caller fills it, then ptrmap_publish().
 * NULL when no free entry lies within the probe bound. */
struct ptrmap_entry *ptrmap_claim(struct ptrmap *map, uintptr_t key, uintptr_t key2);
void ptrmap_publish(struct ptrmap_entry *entry);

/* The published entry for the key, or NULL. */
struct ptrmap_entry *ptrmap_find(const struct ptrmap *map, uintptr_t key, uintptr_t key2);

/* Frees an entry; the caller must be its only user from now on. */
void ptrmap_release(struct ptrmap_entry *entry);

#endif
