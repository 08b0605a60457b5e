/* test_region.c: the region's layout checks and the shim's writes into it. */
#include <pthread.h>
#include <string.h>

#include "check.h"
#include "region.h"
#include "store.h"

static const double def_buckets[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

static struct grpcprom_header *shared;

/* Many threads claim the same paths at once: each path gets one slot. */
static void *claim_and_count(void *arg)
{
    (void)arg;
    char path[64];
    for (int round = 0; round < 1000; round++) {
        int n = snprintf(path, sizeof(path), "/svc.S/M%d", round % 50);
        struct grpcprom_method *m = store_method(shared, path, (size_t)n, true);
        if (m)
            store_add(&m->started, 1);
    }
    return NULL;
}

int main(void)
{
    struct grpcprom_header *h = store_create(def_buckets, 11, 64);
    CHECK(h != NULL);
    CHECK_INT(grpcprom_region_check(h, h->region_size), 0);
    CHECK(grpcprom_region_check(h, h->region_size - 1) != 0);
    CHECK_INT(h->bucket_bounds_ns[0], 5000000);
    CHECK_INT(h->bucket_bounds_ns[10], 10000000000ll);

    /* A slot is found again by its path, and only created when asked. */
    CHECK(store_method(h, "/a.B/C", 6, false) == NULL);
    struct grpcprom_method *m = store_method(h, "/a.B/C", 6, true);
    CHECK(m != NULL);
    CHECK(store_method(h, "/a.B/C", 6, false) == m);
    CHECK(store_method(h, "/a.B/Cd", 7, false) == NULL);
    CHECK_STR(m->path, "/a.B/C");
    CHECK_INT(atomic_load(&m->state), GRPCPROM_SLOT_READY);

    /* Latency goes to the first bucket whose bound it does not exceed. */
    store_handled(h, m, 0, 5000000);      /* exactly .005 s: le=0.005 */
    store_handled(h, m, 0, 5000001);      /* just over: le=0.01 */
    store_handled(h, m, 4, 20000000000);  /* 20 s: +Inf */
    store_handled(h, m, 99, 1);           /* a code gRPC does not have: Unknown */
    CHECK_INT(m->buckets[0], 2);
    CHECK_INT(m->buckets[1], 1);
    CHECK_INT(m->buckets[11], 1);
    CHECK_INT(m->handled[0], 2);
    CHECK_INT(m->handled[4], 1);
    CHECK_INT(m->handled[2], 1);
    CHECK_INT(m->latency_sum_ns, 5000000 + 5000001 + 20000000000ll + 1);

    /* Declared types are not overridden by what calls seem to do. */
    store_mark_type(m, GRPCPROM_TYPE_EXACT | GRPCPROM_SERVER_STREAMS);
    store_mark_type(m, GRPCPROM_CLIENT_STREAMS);
    CHECK_STR(grpcprom_type_label(m->type_bits), "server_stream");
    struct grpcprom_method *dyn = store_method(h, "/a.B/D", 6, true);
    store_mark_type(dyn, GRPCPROM_CLIENT_STREAMS);
    store_mark_type(dyn, GRPCPROM_SERVER_STREAMS);
    CHECK_STR(grpcprom_type_label(dyn->type_bits), "bidi_stream");
    CHECK_STR(grpcprom_type_label(0), "unary");
    CHECK_STR(grpcprom_type_label(GRPCPROM_CLIENT_STREAMS), "client_stream");

    /* A path too long for a slot is refused, not cut. */
    char long_path[GRPCPROM_PATH_MAX + 1];
    memset(long_path, 'x', sizeof(long_path));
    CHECK(store_method(h, long_path, sizeof(long_path), true) == NULL);

    /* A full table refuses new methods and counts them as dropped. */
    struct grpcprom_header *small = store_create(def_buckets, 11, 2);
    CHECK(store_method(small, "/s/1", 4, true) != NULL);
    CHECK(store_method(small, "/s/2", 4, true) != NULL);
    CHECK(store_method(small, "/s/3", 4, true) == NULL);
    CHECK_INT(small->methods_dropped, 1);

    /* A reader rejects a header it cannot trust. */
    struct grpcprom_header bad = *small;
    bad.bucket_count = GRPCPROM_MAX_BUCKETS + 1;
    CHECK(grpcprom_region_check(&bad, sizeof(bad)) != 0);
    bad = *small;
    bad.magic[0] = 'X';
    CHECK(grpcprom_region_check(&bad, sizeof(bad)) != 0);

    /* Concurrent writers: no lost increments, no duplicate slots. */
    shared = store_create(def_buckets, 11, 128);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&threads[i], NULL, claim_and_count, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    int slots = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < shared->method_capacity; i++) {
        struct grpcprom_method *s = &grpcprom_region_methods(shared)[i];
        if (atomic_load(&s->state) == GRPCPROM_SLOT_READY) {
            slots++;
            total += s->started;
        }
    }
    CHECK_INT(slots, 50);
    CHECK_INT(total, 4000);
    CHECK_DONE();
}
