/* bench_contention.c: what sharding the counts saves when two threads count
 * calls of one hot method at once. Each thread adds what a finished unary
 * call adds (started, a message each way, its code, its latency bucket and
 * sum), once into its CPU's shard as the shim does, once all into shard 0
 * as an unsharded region would; the two runs alternate, several rounds.
 *
 * Usage: bench_contention [CALLS_PER_THREAD [ROUNDS]]
 * Prints nanoseconds per call for both, medians of the rounds. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "store.h"

static const double bounds[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
static struct grpcprom_header *h;
static struct grpcprom_method *hot;
static long calls;
static pthread_barrier_t ready;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *count_calls(void *sharded)
{
    pthread_barrier_wait(&ready);
    for (long i = 0; i < calls; i++) {
        struct grpcprom_counts *c = grpcprom_region_counts(h, hot, sharded ? store_shard(h) : 0);
        store_add(&c->started, 1);
        store_add(&c->msg_received, 1);
        store_add(&c->msg_sent, 1);
        store_handled(h, c, 0, 1000000 + (uint64_t)(i & 0xffff));
    }
    return NULL;
}

/* Nanoseconds per call with two threads counting at once. */
static double run(int sharded)
{
    pthread_t threads[2];
    pthread_barrier_init(&ready, NULL, 3);
    for (int t = 0; t < 2; t++)
        pthread_create(&threads[t], NULL, count_calls, sharded ? (void *)1 : NULL);
    pthread_barrier_wait(&ready);
    double start = now_s();
    for (int t = 0; t < 2; t++)
        pthread_join(threads[t], NULL);
    double ns = (now_s() - start) * 1e9 / (double)(2 * calls);
    pthread_barrier_destroy(&ready);
    return ns;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    calls = argc > 1 ? atol(argv[1]) : 2000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (calls <= 0 || rounds <= 0 || rounds > 100) {
        fprintf(stderr, "usage: %s [CALLS_PER_THREAD [ROUNDS]]\n", argv[0]);
        return 2;
    }
    h = store_create(bounds, 11, 16);
    enum grpcprom_overflow_reason why;
    hot = store_claim(h, GRPCPROM_SERVER, "/bench.S/Hot", 12, &why);
    if (h == NULL || hot == NULL)
        return 1;
    double one[100], sharded[100];
    for (int r = 0; r < rounds; r++) {
        one[r] = run(0);
        sharded[r] = run(1);
    }
    qsort(one, (size_t)rounds, sizeof(double), by_value);
    qsort(sharded, (size_t)rounds, sizeof(double), by_value);
    printf("two threads counting one method (%u shards): one shard %.1f ns/call, per-CPU shards "
           "%.1f ns/call (medians of %d rounds)\n",
           h->shard_count, one[rounds / 2], sharded[rounds / 2], rounds);
    return 0;
}
