/* test_surface.c: the tables of the public-API mode: requests and batches
 * by tag, calls by address with the application's references and their
 * waiting batches, a call at an address that held an earlier one, and a
 * stress test of threads racing for the same events and for a call's end
 * (run under ThreadSanitizer by scripts/test). */
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
    unsigned ops = 0;
    struct call_record *rec = NULL;
    CHECK(surface_find(CALL(5)) == NULL);
    CHECK(surface_follow(CALL(5), RECORD(5)));
    struct surface_call *c = surface_find(CALL(5));
    CHECK(c != NULL && surface_record(c) == RECORD(5));
    CHECK(surface_note_batch(TAG(10), c, BATCH_SEND_STATUS));
    CHECK(!surface_note_batch(TAG(10), c, BATCH_SEND_MESSAGE)); /* a tag in use */
    CHECK(surface_take_batch(TAG(10), &ops) == c);
    CHECK_INT(ops, BATCH_SEND_STATUS);
    CHECK(surface_take_batch(TAG(10), &ops) == NULL);
    CHECK(!surface_batch_done(c, &rec));

    /* The application's references: its last one ends the call, unless a
     * batch still waits for its event: then that event ends it. */
    surface_ref(CALL(5));
    CHECK(!surface_unref(CALL(5), &rec));
    CHECK(surface_note_batch(TAG(11), c, BATCH_RECV_MESSAGE));
    CHECK(!surface_unref(CALL(5), &rec));
    CHECK(surface_find(CALL(5)) == NULL); /* let go: a new call here is another */
    CHECK(surface_follow(CALL(5), RECORD(6)));
    struct surface_call *later = surface_find(CALL(5));
    CHECK(later != NULL && later != c && surface_record(later) == RECORD(6));
    CHECK(surface_take_batch(TAG(11), &ops) == c); /* the old call's batch is the old call's */
    CHECK(surface_record(c) == RECORD(5));
    rec = NULL;
    CHECK(surface_batch_done(c, &rec));
    CHECK(rec == RECORD(5));
    CHECK(surface_unref(CALL(5), &rec));
    CHECK(rec == RECORD(6));

    /* A batch gRPC refused gives its hold back. */
    CHECK(surface_follow(CALL(7), NULL));
    c = surface_find(CALL(7));
    CHECK(c != NULL && surface_record(c) == NULL);
    CHECK(surface_note_batch(TAG(12), c, 0));
    surface_forget_batch(TAG(12));
    CHECK(surface_take_batch(TAG(12), &ops) == NULL);
    rec = RECORD(1);
    CHECK(surface_unref(CALL(7), &rec));
    CHECK(rec == NULL);
    surface_forget_batch(TAG(13)); /* a tag never noted: nothing happens */
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
static _Atomic int requests_taken;

/* Each thread serves calls of its own through the same tables; its batch's
 * event is handled on a second thread at the moment the application lets
 * go of the call, and the event of each request is offered to two threads
 * at once, as happens when two operations share a tag: every call ends
 * exactly once, and no event is taken twice. */
struct race {
    struct surface_call *call;
    struct call_record *rec;
    void *tag;
    _Atomic int go, done;
    int ended_here;
};

static void *complete_batch(void *arg)
{
    struct race *r = arg;
    while (!atomic_load(&r->go))
        ;
    unsigned ops;
    struct call_record *rec;
    struct surface_call *c = surface_take_batch(r->tag, &ops);
    if (c && surface_batch_done(c, &rec) && rec == r->rec)
        r->ended_here = 1;
    atomic_store(&r->done, 1);
    return NULL;
}

static void *take_request(void *arg)
{
    struct published_call p;
    if (surface_take_request(arg, &p))
        atomic_fetch_add(&requests_taken, 1);
    return NULL;
}

static void *follow_calls(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < ROUNDS / 10; i++) {
        int n = t * 100 + i % 50;
        grpc_call *slot = CALL(1000 + n);
        grpc_call_details details;
        memset(&details, 0, sizeof(details));
        struct surface_request where = {.call = &slot, .details = &details};
        struct published_call p;
        if (!surface_note_request(TAG(1000 + n), &where))
            continue;
        /* the same event offered twice: one taker only */
        pthread_t other;
        pthread_create(&other, NULL, take_request, TAG(1000 + n));
        bool mine = surface_take_request(TAG(1000 + n), &p);
        pthread_join(other, NULL);
        if (mine)
            atomic_fetch_add(&requests_taken, 1);
        if (!surface_follow(slot, RECORD(n)))
            continue;
        struct race r = {.call = surface_find(slot), .rec = RECORD(n), .tag = TAG(5000 + n)};
        if (!surface_note_batch(r.tag, r.call, BATCH_RECV_MESSAGE))
            continue;
        pthread_t completer;
        pthread_create(&completer, NULL, complete_batch, &r);
        atomic_store(&r.go, 1);
        struct call_record *rec;
        bool ended_by_unref = surface_unref(slot, &rec) && rec == RECORD(n);
        pthread_join(completer, NULL);
        if (ended_by_unref + r.ended_here == 1)
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
        CHECK_INT(atomic_load(&ended[t]), ROUNDS / 10);
    }
    CHECK_INT(atomic_load(&requests_taken), THREADS * ROUNDS / 10); /* each request taken once */
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
