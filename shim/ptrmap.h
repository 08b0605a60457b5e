/* ptrmap.h: a fixed-size, lock-free map from a pointer to an entry, for the
 * shim's per-call records and registered-method handles.
 *
 * An entry carries a word of (generation << 32 | holders). A lookup returns
 * the word it saw; taking a hold succeeds only while that word's generation
 * is still the entry's, so a stale lookup can never hold an entry that was
 * released and claimed again for another key (the ABA that a bare count
 * allows). The map holds at most `limit` entries, and at most half of its
 * capacity, so a free entry is always a short probe away. */
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
    _Atomic uint64_t word;      /* generation << 32 | holders; holders > 0 while published */
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

/* Drops every entry (a forked child's copy describes its parent's calls). */
void ptrmap_clear(struct ptrmap *map);

/* Entry number i (0 to mask), if it is published: for a walk of the map. */
struct ptrmap_entry *ptrmap_live_entry(const struct ptrmap *map, size_t i);

/* The number of an entry, from 0 to twice the limit: for state kept beside it. */
size_t ptrmap_index(const struct ptrmap *map, const struct ptrmap_entry *entry);

/* Claims an entry for the key; the caller fills it, then ptrmap_publish().
 * NULL when `limit` entries are claimed already. */
struct ptrmap_entry *ptrmap_claim(struct ptrmap *map, uintptr_t key);

/* Makes a claimed entry visible to lookups, with one holder. */
void ptrmap_publish(struct ptrmap_entry *entry);

/* The published entry for the key, or NULL; *word is what the entry said. */
struct ptrmap_entry *ptrmap_find(const struct ptrmap *map, uintptr_t key, uint64_t *word);

/* Adds a holder, if the entry is still what ptrmap_find saw in `word`. */
bool ptrmap_hold(struct ptrmap_entry *entry, uint64_t word);

/* Drops a holder. True for the last one: then the entry is the caller's
 * alone, and no lookup can hold it, until ptrmap_release(). */
bool ptrmap_drop(struct ptrmap_entry *entry);

/* Takes a published entry from all its holders at once, if it is still
 * what `word` saw: true when the caller now has it alone, as after the last
 * drop. For an entry whose holders can no longer come (a key published
 * again). */
bool ptrmap_evict(struct ptrmap_entry *entry, uint64_t word);

/* Frees an entry after its last holder dropped it. */
void ptrmap_release(struct ptrmap *map, struct ptrmap_entry *entry);

#endif
