/* test_surface.c: the tables of the public-API mode: requests and batches
 * by tag, calls by address with the application's references, a call at an
 * address that held an earlier one, and a stress test of several threads
 * following calls at once (run under ThreadSanitizer by scripts/test). */
#include <pthread.h>

#include "check.h"
#include "surface.h"

/* Calls and records are only addresses here: nothing reads them. */
#define CALL(n) ((grpc_call *)(uintptr_t)(0x10000 + 64 * (n)))
#define RECORD(n) ((struct call_record *)(uintptr_t)(0x90000 + 64 * (n)))
#define TAG(n) ((void *)(uintptr_t)(0x50000 + 8 * (n)))

static void test_requests(void)
{
    grpc_call *slot = CALL(1);
    grpc_call_details details;
    memset(&details, 0, sizeof(details));
    struct surface_request unregistered = {.call = &slot, .details = &details};
    CHECK(surface_note_request(TAG(1), &unregistered));
    CHECK(!surface_note_request(TAG(1), &unregistered)); /* a tag in use: not followed */
    struct published_call p;
    CHECK(!surface_take_request(TAG(2), &p));
    CHECK(surface_take_request(TAG(1), &p));
    CHECK(p.call == CALL(1));
    CHECK(p.details == &details && p.deadline == &details.deadline && p.registered_method == NULL);
    CHECK(!surface_take_request(TAG(1), &p)); /* taken once */

    gpr_timespec deadline;
    grpc_byte_buffer *payload = NULL;
    int handle;
    struct surface_request registered = {.call = &slot, .registered_method = &handle,
                                         .deadline = &deadline, .payload = &payload};
    CHECK(surface_note_request(TAG(3), &registered));
    surface_forget_request(TAG(3)); /* gRPC refused it */
    CHECK(!surface_take_request(TAG(3), &p));
    CHECK(surface_note_request(TAG(3), &registered));
    slot = CALL(2); /* gRPC writes the call before the event */
    CHECK(surface_take_request(TAG(3), &p));
    CHECK(p.call == CALL(2) && p.registered_method == &handle && p.deadline == &deadline &&
          p.payload == &payload);
}

static void test_calls_and_batches(void)
{
    uint64_t serial = 0, again = 0;
    unsigned ops = 0;
    CHECK(surface_record(CALL(5), &serial) == NULL);
    surface_follow(CALL(5), RECORD(5));
    CHECK(surface_record(CALL(5), &serial) == RECORD(5));
    CHECK(surface_note_batch(TAG(10), CALL(5), serial, BATCH_SEND_STATUS));
    CHECK(!surface_note_batch(TAG(10), CALL(5), serial, BATCH_SEND_MESSAGE));
    CHECK(surface_take_batch(TAG(10), &ops) == RECORD(5));
    CHECK_INT(ops, BATCH_SEND_STATUS);
    CHECK(surface_take_batch(TAG(10), &ops) == NULL);

    /* References: the last one of the application ends the following. */
    surface_ref(CALL(5));
    CHECK(surface_unref(CALL(5)) == NULL);
    CHECK(surface_note_batch(TAG(11), CALL(5), serial, BATCH_RECV_MESSAGE));
    CHECK(surface_unref(CALL(5)) == RECORD(5));
    CHECK(surface_unref(CALL(5)) == NULL);
    CHECK(surface_record(CALL(5), &again) == NULL);

    /* A new call at the same address, with the same record, before the old
     * call's last batch came out of its queue: that batch is not the new one's. */
    surface_follow(CALL(5), RECORD(5));
    CHECK(surface_record(CALL(5), &again) == RECORD(5));
    CHECK(again != serial);
    CHECK(surface_take_batch(TAG(11), &ops) == NULL);
    CHECK(surface_unref(CALL(5)) == RECORD(5));
    surface_forget_batch(TAG(12)); /* a tag never noted: nothing happens */
}

static void test_callback_queues(void)
{
    grpc_completion_queue *cq = (grpc_completion_queue *)(uintptr_t)0x7000;
    CHECK(!surface_is_callback_queue(cq));
    surface_callback_queue(cq, true);
    surface_callback_queue(cq, true);
    CHECK(surface_is_callback_queue(cq));
    surface_callback_queue(cq, false); /* destroyed: its address may be another queue's */
    CHECK(!surface_is_callback_queue(cq));
}

enum { THREADS = 4, ROUNDS = 20000 };
static _Atomic int ended[THREADS];

/* Each thread follows calls of its own, as threads serving different calls
 * do, through the same tables: every call ends exactly once. */
static void *follow_calls(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        int n = t * 100 + i % 50;
        grpc_call *slot = CALL(1000 + n);
        grpc_call_details details;
        memset(&details, 0, sizeof(details));
        struct surface_request where = {.call = &slot, .details = &details};
        struct published_call p;
        uint64_t serial;
        unsigned ops;
        if (!surface_note_request(TAG(1000 + n), &where) || !surface_take_request(TAG(1000 + n), &p))
            continue;
        surface_follow(p.call, RECORD(n));
        if (surface_record(p.call, &serial) != RECORD(n))
            continue;
        surface_note_batch(TAG(5000 + n), p.call, serial, BATCH_RECV_MESSAGE);
        surface_ref(p.call);
        if (surface_take_batch(TAG(5000 + n), &ops) != RECORD(n) || ops != BATCH_RECV_MESSAGE)
            continue;
        struct call_record *a = surface_unref(p.call), *b = surface_unref(p.call);
        if (a == NULL && b == RECORD(n))
            atomic_fetch_add(&ended[t], 1);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++)
        pthread_create(&threads[t], NULL, follow_calls, (void *)(intptr_t)t);
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        CHECK_INT(atomic_load(&ended[t]), ROUNDS);
    }
}

int main(void)
{
    CHECK_INT(surface_init(256), 0);
    test_requests();
    test_calls_and_batches();
    test_callback_queues();
    test_threads();
    CHECK_DONE();
}
