/* test_ptrmap.c: the lock-free map of calls and batches. */
#include <pthread.h>

#include "check.h"
#include "ptrmap.h"

struct entry {
    struct ptrmap_entry e;
    int value;
};

static struct ptrmap shared;

/* Each thread inserts, finds and releases its own keys many times. */
static void *churn(void *arg)
{
    uintptr_t base = (uintptr_t)arg * 1000000;
    int misses = 0;
    for (uintptr_t i = 0; i < 20000; i++) {
        uintptr_t key = base + (i % 100) * 64;
        struct entry *e = (struct entry *)ptrmap_claim(&shared, key, 7);
        if (e == NULL) {
            misses++;
            continue;
        }
        e->value = (int)i;
        ptrmap_publish(&e->e);
        struct entry *found = (struct entry *)ptrmap_find(&shared, key, 7);
        if (found != e || found->value != (int)i)
            misses++;
        ptrmap_release(&e->e);
    }
    return (void *)(uintptr_t)misses;
}

int main(void)
{
    struct ptrmap map;
    CHECK(ptrmap_init(&map, 100, sizeof(struct entry)) != 0); /* not a power of two */
    CHECK_INT(ptrmap_init(&map, 64, sizeof(struct entry)), 0);

    /* Two entries may share a key when the second key differs (a tag on two queues). */
    struct entry *a = (struct entry *)ptrmap_claim(&map, 0x10, 1);
    struct entry *b = (struct entry *)ptrmap_claim(&map, 0x10, 2);
    CHECK(a && b && a != b);
    CHECK(ptrmap_find(&map, 0x10, 1) == NULL); /* not visible before publish */
    ptrmap_publish(&a->e);
    ptrmap_publish(&b->e);
    CHECK(ptrmap_find(&map, 0x10, 1) == &a->e);
    CHECK(ptrmap_find(&map, 0x10, 2) == &b->e);
    CHECK(ptrmap_find(&map, 0x10, 3) == NULL);
    ptrmap_release(&a->e);
    CHECK(ptrmap_find(&map, 0x10, 1) == NULL);
    CHECK(ptrmap_find(&map, 0x10, 2) == &b->e); /* found past a released entry */

    /* A full map refuses instead of waiting, and works again after a clear. */
    int claimed = 0;
    for (uintptr_t k = 1; k <= 200; k++) {
        struct ptrmap_entry *e = ptrmap_claim(&map, k * 8, 0);
        if (e) {
            ptrmap_publish(e);
            claimed++;
        }
    }
    CHECK(claimed < 200);
    ptrmap_clear(&map);
    CHECK(ptrmap_find(&map, 0x10, 2) == NULL);
    CHECK(ptrmap_claim(&map, 0x10, 2) != NULL);

    /* Concurrent claims, finds and releases on one map. */
    CHECK_INT(ptrmap_init(&shared, 4096, sizeof(struct entry)), 0);
    pthread_t threads[4];
    for (uintptr_t i = 0; i < 4; i++)
        pthread_create(&threads[i], NULL, churn, (void *)(i + 1));
    for (int i = 0; i < 4; i++) {
        void *misses;
        pthread_join(threads[i], &misses);
        CHECK_INT((uintptr_t)misses, 0);
    }
    CHECK_DONE();
}
