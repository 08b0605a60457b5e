/* bench_render.c: times the rendering of a realistic region, as the page
 * does it (a fresh buffer each time, freed after).
 *
 * Usage: bench_render [METHODS [ROUNDS]] [--page FILE]
 * Prints the page size, the median and fastest render of ROUNDS, and the
 * first (fresh memory: its page faults count); --page writes one rendering
 * to FILE (for promtool, or to compare two builds).
 * Instructions per render:
 *   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=grpcprom_render \
 *       bench_render 1000 20       (then divide the total by 20) */
#include "region.h"
#include "../region_counts.h"
#include "render.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 88172645463325252ull;

static uint64_t next(uint64_t n)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng % n;
}


/* Fills a slot as a busy server would have: most methods registered (as
 * C++ services are), a few answered by a generic handler; every grpc_type;
 * OK for most calls and a few other codes each; latencies of a few ms to
 * a few hundred ms. */
static void fill(struct grpcprom_header *h, struct grpcprom_method *m, uint32_t i, const char *path)
{
    static const uint32_t types[] = {0, 0, 0, GRPCPROM_CLIENT_STREAMS, GRPCPROM_SERVER_STREAMS,
                                     GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS};
    m->path_len = (uint32_t)strlen(path);
    memcpy(m->path, path, m->path_len);
    uint32_t type = types[next(6)];
    uint32_t bits = type | (i % 10 == 9 ? 0 : GRPCPROM_REGISTERED | GRPCPROM_TYPE_EXACT);
    uint64_t calls = i % 25 == 0 ? 0 : next(1000) * (1 + next(1000000)); /* some never called */
    uint64_t done = 0;
    for (int k = 0; k < 1 + (int)next(5); k++) {
        uint64_t n = calls ? next(calls / 50 + 1) : 0;
        SET(h, m, handled[1 + next(GRPCPROM_CODES - 1)], n);
        done += n;
    }
    SET(h, m, handled[0], calls > done ? calls - done : 0);
    SET(h, m, started, calls + next(3));
    SET(h, m, msg_received, type & GRPCPROM_CLIENT_STREAMS ? calls * (1 + next(40)) : calls);
    SET(h, m, msg_sent, type & GRPCPROM_SERVER_STREAMS ? calls * (1 + next(40)) : calls - calls / 30);
    uint64_t left = calls, sum_us = 0;
    for (uint32_t j = 0; j < h->bucket_count && left; j++) {
        uint64_t n = j + 1 == h->bucket_count ? left : next(left + 1) / 2;
        SET(h, m, buckets[j], n);
        sum_us += n * (uint64_t)(h->bucket_bounds[j] * 7e5);
        left -= n;
    }
    SET(h, m, buckets[h->bucket_count], left);
    SET(h, m, latency_sum_us, sum_us + left * 12000000 + next(1000000));
    atomic_store_explicit(&m->type_bits, bits, memory_order_relaxed);
    atomic_store_explicit(&m->state, GRPCPROM_SLOT_READY, memory_order_release);
}

/* A region with `methods` methods, ten per service, and one overflow slot in use. */
static struct grpcprom_header *make_region(uint32_t methods)
{
    static const double bounds[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
    static const char *const domains[] = {"billing", "identity", "catalog", "shipping", "search",
                                          "payments", "inventory", "notifications", "analytics", "storage"};
    static const char *const nouns[] = {"Invoice", "Account", "Product", "Shipment", "Query",
                                        "Payment", "StockLevel", "Subscription", "Report", "Blob"};
    static const char *const verbs[] = {"Get", "List", "Create", "Update", "Delete",
                                        "BatchGet", "Watch", "Search", "Import", "StreamChanges"};
    struct grpcprom_header plan = {0};
    size_t size = grpcprom_region_plan(&plan, methods, 11, 4);
    struct grpcprom_header *h = aligned_alloc(64, size);
    if (!h)
        abort();
    memset(h, 0, size);
    memcpy(h, &plan, sizeof(plan));
    h->layout_version = GRPCPROM_LAYOUT_VERSION;
    h->bucket_count = 11;
    for (uint32_t j = 0; j < 11; j++) {
        h->bucket_bounds[j] = bounds[j];
        h->bucket_bounds_ns[j] = (uint64_t)(bounds[j] * 1e9 + 0.5);
    }
    memcpy(h->magic, GRPCPROM_MAGIC, sizeof(h->magic));
    for (uint32_t i = 0; i < methods; i++) {
        uint32_t s = i / 10;
        char path[256];
        snprintf(path, sizeof(path), "/com.example.platform.%s.v%u.%s%sService/%s%ss",
                 domains[s % 10], 1 + s / 100, nouns[s / 10 % 10], s >= 100 ? "Admin" : "",
                 verbs[i % 10], nouns[(s + i) % 10]);
        fill(h, &grpcprom_region_methods(h)[i], i, path);
    }
    atomic_store(&h->methods_used, methods);
    fill(h, grpcprom_region_overflow(h, GRPCPROM_SERVER, 0), 1, GRPCPROM_OVERFLOW_PATH);
    grpcprom_region_overflow(h, GRPCPROM_SERVER, 0)->type_bits = GRPCPROM_OVERFLOW | GRPCPROM_TYPE_EXACT;
    atomic_store_explicit(&h->overflow_calls[GRPCPROM_OVERFLOW_TABLE_FULL], 1234, memory_order_relaxed);
    if (grpcprom_region_check(h, size) != 0)
        abort();
    return h;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *page_file = NULL;
    long num[2] = {1000, 200};
    int nums = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--page") == 0 && i + 1 < argc)
            page_file = argv[++i];
        else if (nums < 2 && atol(argv[i]) > 0)
            num[nums++] = atol(argv[i]);
        else {
            fprintf(stderr, "usage: %s [METHODS [ROUNDS]] [--page FILE]\n", argv[0]);
            return 2;
        }
    }
    struct grpcprom_header *h = make_region((uint32_t)num[0]);
    double *ms = calloc((size_t)num[1], sizeof(*ms));
    size_t len = 0;
    for (long r = 0; r < num[1]; r++) {
        struct grpcprom_buf b = {0};
        double t0 = now_ms();
        if (grpcprom_render(h, &b) != 0)
            return 1;
        ms[r] = now_ms() - t0;
        len = b.len;
        if (page_file && r == 0) {
            FILE *f = fopen(page_file, "w");
            if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0)
                return 1;
        }
        grpcprom_buf_free(&b);
    }
    double first = ms[0];
    qsort(ms, (size_t)num[1], sizeof(*ms), cmp_double);
    printf("render %ld methods: %zu bytes, median %.3f ms, fastest %.3f ms (%ld rounds), first %.3f ms\n",
           num[0], len, ms[num[1] / 2], ms[0], num[1], first);
    free(ms);
    free(h);
    return 0;
}
