/* ptrmap.h: a fixed-size, lock-free map from a pointer to an entry: the
 * handles of registered methods, by which gRPC names a published call's
 * method. An entry is claimed and published when a method registers, found
 * as its calls arrive, and released when its server is destroyed (after
 * which no call of that server is published, so no lookup of its handle
 * races the release). The map holds at most `limit` entries, and at most
 * half of its capacity, so a free entry is always a short probe away. */
#ifndef GRPCPROM_PTRMAP_H
#define GRPCPROM_PTRMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every entry type starts with this. */
struct ptrmap_entry {
    _Atomic uint32_t state;
    uint32_t pad;
    _Atomic uintptr_t key;
};

struct ptrmap {
    char *entries;
    size_t entry_size;
    size_t mask;                /* capacity - 1; capacity is a power of two */
    size_t limit;               /* entries that may be claimed at once */
    _Atomic size_t claimed;
    _Atomic size_t max_probe;   /* the farthest any key was placed from its hash */
};

/* Maps zeroed memory for `limit` entries (room for twice as many); 0 or -errno. */
int ptrmap_init(struct ptrmap *map, size_t limit, size_t entry_size);

/* Entry number i (0 to mask), if it is published: for a walk of the map. */
struct ptrmap_entry *ptrmap_live_entry(const struct ptrmap *map, size_t i);

/* Claims an entry for the key; the caller fills it, then ptrmap_publish().
 * NULL when `limit` entries are claimed already. */
struct ptrmap_entry *ptrmap_claim(struct ptrmap *map, uintptr_t key);

/* Makes a claimed entry visible to lookups. */
void ptrmap_publish(struct ptrmap_entry *entry);

/* The published entry for the key, or NULL. */
struct ptrmap_entry *ptrmap_find(const struct ptrmap *map, uintptr_t key);

/* Takes a published entry out of the map, for another key to claim. */
void ptrmap_release(struct ptrmap *map, struct ptrmap_entry *entry);

/* Releases a published entry found with ptrmap_find, unless another
 * thread released it first: true for the one caller that did. Copy what
 * the entry holds before: once released it may be claimed again. */
bool ptrmap_take(struct ptrmap *map, struct ptrmap_entry *entry);

/* Makes a published entry impossible to find by its key, while it stays
 * taken (its memory unchanged) until ptrmap_release. */
void ptrmap_hide(struct ptrmap_entry *entry);

#endif
