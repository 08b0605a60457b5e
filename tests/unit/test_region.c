/* test_region.c: the region's layout checks and the shim's writes into it. */
#include <pthread.h>
#include <string.h>

#include "check.h"
#include "region.h"
#include "store.h"

static const double def_buckets[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

static struct grpcprom_header *shared;

static struct grpcprom_method *claim(struct grpcprom_header *h, const char *path)
{
    enum grpcprom_overflow_reason why;
    return store_claim(h, GRPCPROM_SERVER, path, strlen(path), &why);
}

static enum grpcprom_overflow_reason refusal(struct grpcprom_header *h, const char *path, size_t len)
{
    enum grpcprom_overflow_reason why = GRPCPROM_OVERFLOW_REASONS;
    CHECK(store_claim(h, GRPCPROM_SERVER, path, len, &why) == NULL);
    return why;
}

/* Many threads claim the same paths at once, while the table fills up:
 * each path gets one slot, no increment is lost, no slot is handed twice. */
static uint64_t started_of(const struct grpcprom_header *h, const struct grpcprom_method *m)
{
    struct grpcprom_totals t;
    grpcprom_region_sum(h, m, &t);
    return t.started;
}

static void *claim_and_count(void *arg)
{
    (void)arg;
    uintptr_t wrong = 0;
    char path[64];
    for (int round = 0; round < 4000; round++) {
        int n = snprintf(path, sizeof(path), "/svc.S/M%d", round % 200);
        enum grpcprom_overflow_reason why;
        struct grpcprom_method *m = store_claim(shared, GRPCPROM_SERVER, path, (size_t)n, &why);
        if (m == NULL)
            m = grpcprom_region_overflow(shared, GRPCPROM_SERVER, 0);
        store_add(&grpcprom_region_counts(shared, m, store_shard(shared))->started, 1);
        /* A refused path can still be published after the refusal, by a
         * thread that took the last slot for it first: then it is found. */
        struct grpcprom_method *found = store_find(shared, GRPCPROM_SERVER, path, (size_t)n);
        if (m->type_bits & GRPCPROM_OVERFLOW ? found && memcmp(found->path, path, (size_t)n) != 0
                                             : found != m)
            wrong++;
    }
    return (void *)wrong;
}

int main(void)
{
    struct grpcprom_header *h = store_create(def_buckets, 11, 64);
    CHECK(h != NULL);
    CHECK_INT(grpcprom_region_check(h, h->region_size), 0);
    CHECK(grpcprom_region_check(h, h->region_size - 1) != 0);
    CHECK_INT(h->index_capacity, 128);
    CHECK_INT(h->bucket_bounds_ns[0], 5000000);
    CHECK_INT(h->bucket_bounds_ns[10], 10000000000ll);

    /* A slot is found again by its path, and only created by a claim. */
    CHECK(store_find(h, GRPCPROM_SERVER, "/a.B/C", 6) == NULL);
    struct grpcprom_method *m = claim(h, "/a.B/C");
    CHECK(m != NULL);
    CHECK(store_find(h, GRPCPROM_SERVER, "/a.B/C", 6) == m);
    CHECK(claim(h, "/a.B/C") == m);
    CHECK(store_find(h, GRPCPROM_SERVER, "/a.B/Cd", 7) == NULL);
    CHECK_INT(m->path_len, 6);
    CHECK(memcmp(m->path, "/a.B/C", 6) == 0);
    CHECK_INT(atomic_load(&m->state), GRPCPROM_SLOT_READY);
    CHECK_INT(grpcprom_region_methods_used(h), 1);

    /* Latency goes to the first bucket whose bound it does not exceed. */
    struct grpcprom_counts *first = grpcprom_region_counts(h, m, 0);
    struct grpcprom_counts *last = grpcprom_region_counts(h, m, h->shard_count - 1);
    store_handled(h, first, 0, 5000000);      /* exactly .005 s: le=0.005 */
    store_handled(h, last, 0, 5000001);       /* just over: le=0.01 */
    store_handled(h, first, 4, 20000000000);  /* 20 s: +Inf */
    store_handled(h, last, 99, 1);            /* a code gRPC does not have: Unknown */
    struct grpcprom_totals t;
    grpcprom_region_sum(h, m, &t);
    CHECK_INT(t.buckets[0], 2);
    CHECK_INT(t.buckets[1], 1);
    CHECK_INT(t.buckets[11], 1);
    CHECK_INT(t.handled[0], 2);
    CHECK_INT(t.handled[4], 1);
    CHECK_INT(t.handled[2], 1);
    CHECK_INT(t.latency_sum_us, 5000 + 5000 + 20000000ll + 0);

    /* Every slot's shards are whole cache lines of their own, inside the region. */
    CHECK_INT(h->counts_size % 64, 0);
    CHECK_INT((uintptr_t)first % 64, 0);
    CHECK((char *)grpcprom_region_counts(h, grpcprom_region_overflow(h, GRPCPROM_CLIENT, 3),
                                         h->shard_count - 1) + h->counts_size ==
          (char *)h + h->region_size);

    /* A client's per-message histograms have buckets of their own, after
     * the handling histogram's, and sums of their own. */
    store_observe(h, first, GRPCPROM_MSG_SEND, 5000001);
    store_observe(h, last, GRPCPROM_MSG_RECV, 20000000000);
    grpcprom_region_sum(h, m, &t);
    CHECK_INT(t.buckets[12 + 1], 1);
    CHECK_INT(t.buckets[24 + 11], 1);
    CHECK_INT(t.msg_sum_us[0], 5000);
    CHECK_INT(t.msg_sum_us[1], 20000000ll);
    CHECK_INT(t.latency_sum_us, 5000 + 5000 + 20000000ll + 0);
    CHECK((char *)&last->buckets[GRPCPROM_HISTOGRAM_START(h, GRPCPROM_HISTOGRAMS)] <=
          (char *)last + h->counts_size);

    /* One path has a slot on each side; each side has its overflow slots. */
    enum grpcprom_overflow_reason why;
    struct grpcprom_method *as_client = store_claim(h, GRPCPROM_CLIENT, "/a.B/C", 6, &why);
    CHECK(as_client != NULL && as_client != m);
    CHECK_INT(as_client->side, GRPCPROM_CLIENT);
    CHECK(store_find(h, GRPCPROM_CLIENT, "/a.B/C", 6) == as_client);
    CHECK(store_find(h, GRPCPROM_SERVER, "/a.B/C", 6) == m);
    CHECK(store_find(h, GRPCPROM_CLIENT, "/a.B/Cd", 7) == NULL);
    for (uint32_t bits = 0; bits < 4; bits++) {
        CHECK_INT(grpcprom_region_overflow(h, GRPCPROM_CLIENT, bits)->side, GRPCPROM_CLIENT);
        CHECK_INT(grpcprom_region_overflow(h, GRPCPROM_SERVER, bits)->side, GRPCPROM_SERVER);
    }

    /* Client paths take at most client_method_limit slots; the server's
     * keep the rest. */
    atomic_store(&h->client_method_limit, atomic_load(&h->client_methods_used) + 1);
    CHECK(store_claim(h, GRPCPROM_CLIENT, "/q.S/One", 8, &why) != NULL);
    CHECK(store_claim(h, GRPCPROM_CLIENT, "/q.S/Two", 8, &why) == NULL);
    CHECK_INT(why, GRPCPROM_OVERFLOW_CLIENT_TABLE_FULL);
    CHECK(store_claim(h, GRPCPROM_CLIENT, "/q.S/One", 8, &why) != NULL); /* found, not taken */
    CHECK(store_claim(h, GRPCPROM_SERVER, "/q.S/Two", 8, &why) != NULL);
    CHECK(h->shard_count >= 1 && (h->shard_count & (h->shard_count - 1)) == 0);

    /* Declared types are not overridden by what calls seem to do. */
    store_mark_type(m, GRPCPROM_TYPE_EXACT | GRPCPROM_SERVER_STREAMS);
    store_mark_type(m, GRPCPROM_CLIENT_STREAMS);
    CHECK_STR(grpcprom_type_label(m->type_bits), "server_stream");
    struct grpcprom_method *dyn = claim(h, "/a.B/D");
    store_mark_type(dyn, GRPCPROM_CLIENT_STREAMS);
    store_mark_type(dyn, GRPCPROM_SERVER_STREAMS);
    CHECK_STR(grpcprom_type_label(dyn->type_bits), "bidi_stream");
    CHECK_STR(grpcprom_type_label(0), "unary");
    CHECK_STR(grpcprom_type_label(GRPCPROM_CLIENT_STREAMS), "client_stream");

    /* Paths up to 1 KiB get a slot; longer ones, paths that are no UTF-8
     * text and the overflow's own path are refused with their reason. */
    char path[GRPCPROM_PATH_MAX + 1];
    memset(path, 'x', sizeof(path));
    path[0] = '/';
    CHECK(store_claim(h, GRPCPROM_SERVER, path, GRPCPROM_PATH_MAX, &(enum grpcprom_overflow_reason){0}) != NULL);
    CHECK(store_find(h, GRPCPROM_SERVER, path, GRPCPROM_PATH_MAX) != NULL);
    CHECK_INT(refusal(h, path, sizeof(path)), GRPCPROM_OVERFLOW_PATH_TOO_LONG);
    CHECK(store_find(h, GRPCPROM_SERVER, path, sizeof(path)) == NULL);
    CHECK_INT(refusal(h, "/gen.Svc/M\xff", 11), GRPCPROM_OVERFLOW_INVALID_PATH);
    CHECK_INT(refusal(h, "/gen.Svc/M\xc0\xaf", 12), GRPCPROM_OVERFLOW_INVALID_PATH);   /* overlong '/' */
    CHECK_INT(refusal(h, "/gen.Svc/M\xed\xa0\x80", 13), GRPCPROM_OVERFLOW_INVALID_PATH); /* surrogate */
    CHECK_INT(refusal(h, "/gen.Svc/M\xe2\x82", 12), GRPCPROM_OVERFLOW_INVALID_PATH);   /* cut short */
    CHECK_INT(refusal(h, "/a\0b/c", 6), GRPCPROM_OVERFLOW_INVALID_PATH);
    CHECK_INT(refusal(h, "", 0), GRPCPROM_OVERFLOW_INVALID_PATH);
    CHECK_INT(refusal(h, GRPCPROM_OVERFLOW_PATH, strlen(GRPCPROM_OVERFLOW_PATH)),
              GRPCPROM_OVERFLOW_INVALID_PATH);
    CHECK(claim(h, "/\xc3\xa9t\xc3\xa9.Svc/\xf0\x9f\x98\x80") != NULL); /* UTF-8 is fine */
    CHECK(grpcprom_label_text_ok("\xf4\x8f\xbf\xbf", 4));  /* U+10FFFF */
    CHECK(!grpcprom_label_text_ok("\xf4\x90\x80\x80", 4)); /* past U+10FFFF */

    /* Overflow slots: one per type, labelled _OTHER, type fixed. */
    struct grpcprom_method *o = grpcprom_region_overflow(h, GRPCPROM_SERVER, GRPCPROM_CLIENT_STREAMS);
    CHECK(o == grpcprom_region_overflow(h, GRPCPROM_SERVER, GRPCPROM_CLIENT_STREAMS));
    CHECK(o != grpcprom_region_overflow(h, GRPCPROM_SERVER, 0));
    CHECK(o == grpcprom_region_overflow(h, GRPCPROM_SERVER, GRPCPROM_CLIENT_STREAMS));
    CHECK_INT(o->path_len, strlen(GRPCPROM_OVERFLOW_PATH));
    store_mark_type(o, GRPCPROM_SERVER_STREAMS);
    CHECK_STR(grpcprom_type_label(o->type_bits), "client_stream");
    CHECK(o->type_bits & GRPCPROM_OVERFLOW);
    store_overflowed(h, GRPCPROM_OVERFLOW_INVALID_PATH, 2);
    store_overflowed(h, GRPCPROM_OVERFLOW_INVALID_PATH, 1);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_INVALID_PATH], 3);

    /* A full table refuses new methods but still finds the ones it has,
     * and a lookup of an absent path stops at an empty index entry. */
    struct grpcprom_header *small = store_create(def_buckets, 11, 2);
    struct grpcprom_method *s1 = claim(small, "/s/1");
    CHECK(s1 != NULL && claim(small, "/s/2") != NULL);
    CHECK_INT(refusal(small, "/s/3", 4), GRPCPROM_OVERFLOW_TABLE_FULL);
    CHECK_INT(refusal(small, "/s/4", 4), GRPCPROM_OVERFLOW_TABLE_FULL);
    CHECK(claim(small, "/s/1") == s1);
    CHECK(store_find(small, GRPCPROM_SERVER, "/s/3", 4) == NULL);
    CHECK_INT(grpcprom_region_methods_used(small), 2);

    /* However full the table, at least half the index stays empty, so a
     * lookup of a path nobody has (any client can send one) stops within a
     * few entries instead of comparing every method. */
    struct grpcprom_header *big = store_create(def_buckets, 11, 5000);
    for (int i = 0; i < 6000; i++) {
        char p[32];
        enum grpcprom_overflow_reason why;
        store_claim(big, GRPCPROM_SERVER, p, (size_t)snprintf(p, sizeof(p), "/big.S/M%d", i), &why);
    }
    CHECK_INT(grpcprom_region_methods_used(big), 5000);
    uint32_t empty = 0;
    for (uint32_t i = 0; i < big->index_capacity; i++)
        empty += atomic_load(&grpcprom_region_index(big)[i]) == 0;
    CHECK(empty >= big->index_capacity / 2);

    /* A reader rejects a header it cannot trust. */
    struct grpcprom_header bad = *small;
    bad.bucket_count = GRPCPROM_MAX_BUCKETS + 1;
    CHECK(grpcprom_region_check(&bad, small->region_size) != 0);
    bad = *small;
    bad.magic[0] = 'X';
    CHECK(grpcprom_region_check(&bad, small->region_size) != 0);
    bad = *small;
    bad.methods_offset += 64;
    CHECK(grpcprom_region_check(&bad, small->region_size) != 0);
    bad = *small;
    bad.method_capacity = 1u << 31;
    CHECK(grpcprom_region_check(&bad, small->region_size) != 0);
    bad = *small;
    bad.shard_count = 3; /* not a power of two */
    CHECK(grpcprom_region_check(&bad, small->region_size) != 0);
    bad = *small;
    bad.shard_count = GRPCPROM_MAX_SHARDS * 2;
    CHECK(grpcprom_region_check(&bad, small->region_size) != 0);
    bad = *small;
    bad.counts_size -= 64; /* blocks that would overlap */
    CHECK(grpcprom_region_check(&bad, small->region_size) != 0);
    bad = *small;
    bad.bucket_count = 30; /* more buckets than its blocks have room for */
    CHECK(grpcprom_region_check(&bad, small->region_size) != 0);

    /* Concurrent writers on a table too small for every path: no lost
     * increments, no duplicate slots, every refused path in overflow. */
    shared = store_create(def_buckets, 11, 150);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&threads[i], NULL, claim_and_count, NULL);
    for (int i = 0; i < 4; i++) {
        void *wrong;
        pthread_join(threads[i], &wrong);
        CHECK_INT((uintptr_t)wrong, 0);
    }
    /* A slot filled by a claimer that lost its path to another thread stays
     * unpublished and unused: at most one per racing thread and path. */
    uint64_t total = started_of(shared, grpcprom_region_overflow(shared, GRPCPROM_SERVER, 0));
    uint32_t published = 0;
    for (uint32_t i = 0; i < grpcprom_region_methods_used(shared); i++) {
        struct grpcprom_method *s = &grpcprom_region_methods(shared)[i];
        if (atomic_load(&s->state) != GRPCPROM_SLOT_READY) {
            CHECK_INT(started_of(shared, s), 0);
            continue;
        }
        published++;
        CHECK(started_of(shared, s) > 0 && started_of(shared, s) <= 4 * 4000 / 200);
        for (uint32_t j = 0; j < i; j++) {
            struct grpcprom_method *t = &grpcprom_region_methods(shared)[j];
            CHECK(atomic_load(&t->state) != GRPCPROM_SLOT_READY || t->path_len != s->path_len ||
                  memcmp(t->path, s->path, s->path_len) != 0);
        }
        total += started_of(shared, s);
    }
    CHECK_INT(grpcprom_region_methods_used(shared), 150);
    CHECK(published > 100);
    CHECK_INT(total, 4 * 4000);
    fprintf(stderr, "store stress: %u of 150 slots published\n", published);
    CHECK_DONE();
}
