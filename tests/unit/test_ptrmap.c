/* test_ptrmap.c: the lock-free map of registered-method handles: lookups,
 * bounds, entries released and claimed again, and a stress test of threads
 * claiming, finding and releasing keys of their own in a small map while
 * the others do the same (run under ThreadSanitizer by scripts/test). */
#include <pthread.h>
#include <stdbool.h>

#include "check.h"
#include "ptrmap.h"

struct entry {
    struct ptrmap_entry e;
    _Atomic uintptr_t payload; /* the key, while the entry is live */
};

#define OWNERS 4
#define KEYS_PER_OWNER 2
#define ROUNDS 100000

static struct ptrmap shared;
static atomic_ulong claims, full;

/* An owner is a server: it registers its methods' handles, its calls find
 * them, and it is destroyed, releasing them. Its lookups must find its own
 * entries, whatever the other owners claim and release meanwhile. */
static void *owner(void *arg)
{
    uintptr_t first = 1 + (uintptr_t)arg * KEYS_PER_OWNER;
    uintptr_t wrong = 0;
    for (unsigned i = 0; i < ROUNDS; i++) {
        struct entry *mine[KEYS_PER_OWNER];
        for (int k = 0; k < KEYS_PER_OWNER; k++) {
            uintptr_t key = (first + (uintptr_t)k) * 64;
            mine[k] = (struct entry *)ptrmap_claim(&shared, key);
            if (mine[k] == NULL) {
                atomic_fetch_add(&full, 1);
                continue;
            }
            atomic_fetch_add(&claims, 1);
            atomic_store_explicit(&mine[k]->payload, key, memory_order_relaxed);
            ptrmap_publish(&mine[k]->e);
        }
        for (int k = 0; k < KEYS_PER_OWNER; k++) {
            uintptr_t key = (first + (uintptr_t)k) * 64;
            struct entry *found = (struct entry *)ptrmap_find(&shared, key);
            if (found != mine[k] ||
                (found && atomic_load_explicit(&found->payload, memory_order_relaxed) != key))
                wrong++;
        }
        for (int k = 0; k < KEYS_PER_OWNER; k++)
            if (mine[k])
                ptrmap_release(&shared, &mine[k]->e);
    }
    return (void *)wrong;
}

int main(void)
{
    /* A key is found once published, and not after its release. */
    struct ptrmap map;
    CHECK_INT(ptrmap_init(&map, 16, sizeof(struct entry)), 0);
    struct ptrmap_entry *a = ptrmap_claim(&map, 0x1000);
    CHECK(a != NULL);
    CHECK(ptrmap_find(&map, 0x1000) == NULL); /* claimed, not yet published */
    ptrmap_publish(a);
    CHECK(ptrmap_find(&map, 0x1000) == a);
    CHECK(ptrmap_find(&map, 0x2000) == NULL);
    CHECK(ptrmap_live_entry(&map, (size_t)((char *)a - map.entries) / map.entry_size) == a);
    ptrmap_release(&map, a);
    CHECK(ptrmap_find(&map, 0x1000) == NULL);

    /* The limit holds; a released entry makes room, and keys placed past it
     * are still found. */
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
    ptrmap_release(&small, taken[1]);
    CHECK(ptrmap_find(&small, 3 * 8) == taken[2]);
    CHECK(ptrmap_claim(&small, 99 * 8) != NULL);

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
        CHECK(ptrmap_find(&crowded, k << 20) != NULL);
    CHECK(ptrmap_claim(&crowded, 1001 << 20) == NULL);

    /* The stress test: room for fewer keys than the owners hold at once, so
     * claims also fail and entries change keys all the time. */
    CHECK_INT(ptrmap_init(&shared, OWNERS * KEYS_PER_OWNER - 2, sizeof(struct entry)), 0);
    pthread_t threads[OWNERS];
    for (uintptr_t i = 0; i < OWNERS; i++)
        pthread_create(&threads[i], NULL, owner, (void *)i);
    for (int i = 0; i < OWNERS; i++) {
        void *wrong;
        pthread_join(threads[i], &wrong);
        CHECK_INT((uintptr_t)wrong, 0);
    }
    CHECK_INT(atomic_load(&shared.claimed), 0);
    CHECK(atomic_load(&claims) > ROUNDS);
    fprintf(stderr, "stress: %lu claims, %lu refused as full\n", atomic_load(&claims),
            atomic_load(&full));
    CHECK_DONE();
}
