/* test_ptrmap.c: the lock-free map of calls and method handles: lookups,
 * holders, bounds, and a stress test of entries freed and claimed again for
 * other keys while other threads look them up (run under ThreadSanitizer by
 * scripts/test). */
#include <pthread.h>
#include <stdbool.h>

#include "check.h"
#include "ptrmap.h"

struct entry {
    struct ptrmap_entry e;
    uintptr_t payload; /* the key while the entry is live, POISON once freed */
};

#define POISON ((uintptr_t)0xdead)
#define KEYS_PER_OWNER 8
#define OWNERS 2
#define LOOKERS 2
#define ROUNDS 200000

static struct ptrmap shared;
static atomic_ulong claims, finishes, holds;

/* The last holder of an entry: it must be freed exactly once. */
static void drop_entry(struct entry *e)
{
    if (ptrmap_drop(&e->e)) {
        e->payload = POISON;
        atomic_fetch_add(&finishes, 1);
        ptrmap_release(&shared, &e->e);
    }
}

/* An owner is the application: it publishes calls with its own keys (so a
 * key is never live twice) and lets go of each two rounds later. */
static void *owner(void *arg)
{
    uintptr_t first = 1 + (uintptr_t)arg * KEYS_PER_OWNER;
    struct entry *live[2] = {NULL, NULL};
    for (unsigned i = 0; i < ROUNDS; i++) {
        if (live[i % 2])
            drop_entry(live[i % 2]);
        uintptr_t key = (first + i % KEYS_PER_OWNER) * 64;
        struct entry *e = (struct entry *)ptrmap_claim(&shared, key);
        live[i % 2] = e;
        if (e == NULL)
            continue;
        atomic_fetch_add(&claims, 1);
        e->payload = key;
        ptrmap_publish(&e->e);
    }
    for (int i = 0; i < 2; i++)
        if (live[i])
            drop_entry(live[i]);
    return NULL;
}

/* A looker is a completion on another thread: it finds a key, holds it and
 * must then see that key's entry, not a freed one nor another key's (a hold
 * that did not check the generation would take a reused entry here). */
static void *looker(void *arg)
{
    uintptr_t wrong = 0, seed = (uintptr_t)arg * 7919;
    for (unsigned i = 0; i < ROUNDS; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uintptr_t key = (1 + (seed >> 33) % (OWNERS * KEYS_PER_OWNER)) * 64;
        uint64_t word;
        struct entry *e = (struct entry *)ptrmap_find(&shared, key, &word);
        if (e == NULL || !ptrmap_hold(&e->e, word))
            continue;
        atomic_fetch_add(&holds, 1);
        if (e->payload != key || atomic_load(&e->e.key) != key)
            wrong++;
        drop_entry(e);
    }
    return (void *)wrong;
}

int main(void)
{
    struct ptrmap map;
    CHECK(ptrmap_init(&map, 0, sizeof(struct entry)) != 0);
    CHECK_INT(ptrmap_init(&map, 4, sizeof(struct entry)), 0);
    CHECK_INT(map.mask + 1, 8);

    /* Claimed is not found; published is, with one holder. */
    struct entry *a = (struct entry *)ptrmap_claim(&map, 0x10);
    uint64_t word;
    CHECK(a != NULL);
    CHECK(ptrmap_find(&map, 0x10, &word) == NULL);
    ptrmap_publish(&a->e);
    CHECK(ptrmap_find(&map, 0x10, &word) == &a->e);
    CHECK(ptrmap_find(&map, 0x18, &word) == NULL);

    /* Holders: the last drop says so, and then no lookup finds the entry. */
    CHECK(ptrmap_find(&map, 0x10, &word) == &a->e);
    CHECK(ptrmap_hold(&a->e, word));
    CHECK(!ptrmap_drop(&a->e));
    CHECK(ptrmap_drop(&a->e));
    CHECK(ptrmap_find(&map, 0x10, &word) == NULL);
    CHECK(!ptrmap_hold(&a->e, word)); /* what an earlier lookup saw is stale */
    ptrmap_release(&map, &a->e);

    /* A stale lookup cannot hold the entry once it serves another key. */
    struct entry *b = (struct entry *)ptrmap_claim(&map, 0x20);
    ptrmap_publish(&b->e);
    uint64_t stale;
    CHECK(ptrmap_find(&map, 0x20, &stale) == &b->e);
    CHECK(ptrmap_drop(&b->e));
    ptrmap_release(&map, &b->e);
    struct entry *c = NULL;
    for (uintptr_t key = 0x28; c != b && key < 0x28 + 1000 * 64; key += 64) {
        if (c)
            ptrmap_release(&map, &c->e); /* another entry: try the next key */
        c = (struct entry *)ptrmap_claim(&map, key);
    }
    CHECK(c == b); /* the same entry, now another key's */
    ptrmap_publish(&c->e);
    CHECK(!ptrmap_hold(&b->e, stale));
    CHECK_INT((uint32_t)atomic_load(&c->e.word), 1); /* its holders are untouched */
    CHECK(!ptrmap_evict(&b->e, stale));

    /* The map takes `limit` entries, refuses more, and takes again once one
     * is freed or the map is cleared (a forked child). */
    struct ptrmap small;
    CHECK_INT(ptrmap_init(&small, 3, sizeof(struct entry)), 0);
    struct ptrmap_entry *taken[3];
    for (uintptr_t k = 0; k < 3; k++) {
        taken[k] = ptrmap_claim(&small, (k + 1) * 8);
        CHECK(taken[k] != NULL);
        if (taken[k])
            ptrmap_publish(taken[k]);
    }
    CHECK(ptrmap_claim(&small, 99 * 8) == NULL);
    CHECK(ptrmap_drop(taken[1]));
    ptrmap_release(&small, taken[1]);
    CHECK(ptrmap_find(&small, 3 * 8, &word) == taken[2]); /* found past a freed entry */
    CHECK(ptrmap_claim(&small, 99 * 8) != NULL);
    ptrmap_clear(&small);
    CHECK(ptrmap_find(&small, 8, &word) == NULL);
    CHECK(ptrmap_claim(&small, 8) != NULL);

    /* Many keys colliding in a map at its limit: every one found. */
    struct ptrmap crowded;
    CHECK_INT(ptrmap_init(&crowded, 1000, sizeof(struct entry)), 0);
    for (uintptr_t k = 1; k <= 1000; k++) {
        struct ptrmap_entry *e = ptrmap_claim(&crowded, k << 20);
        CHECK(e != NULL);
        if (e)
            ptrmap_publish(e);
    }
    for (uintptr_t k = 1; k <= 1000; k++)
        CHECK(ptrmap_find(&crowded, k << 20, &word) != NULL);
    CHECK(ptrmap_claim(&crowded, 1001 << 20) == NULL);

    /* The stress test: a small map, so entries are freed and claimed again
     * for other keys all the time while lookers hold them. */
    CHECK_INT(ptrmap_init(&shared, 4, sizeof(struct entry)), 0);
    pthread_t threads[OWNERS + LOOKERS];
    for (uintptr_t i = 0; i < OWNERS; i++)
        pthread_create(&threads[i], NULL, owner, (void *)i);
    for (uintptr_t i = 0; i < LOOKERS; i++)
        pthread_create(&threads[OWNERS + i], NULL, looker, (void *)(i + 1));
    for (int i = 0; i < OWNERS + LOOKERS; i++) {
        void *wrong;
        pthread_join(threads[i], &wrong);
        CHECK_INT((uintptr_t)wrong, 0);
    }
    CHECK_INT(atomic_load(&finishes), atomic_load(&claims));
    CHECK_INT(atomic_load(&shared.claimed), 0);
    CHECK(atomic_load(&claims) > ROUNDS / 2);
    CHECK(atomic_load(&holds) > 0);
    fprintf(stderr, "stress: %lu calls, %lu held by lookers\n", atomic_load(&claims), atomic_load(&holds));
    CHECK_DONE();
}
