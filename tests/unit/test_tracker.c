/* test_tracker.c: a call's life as the hooks report it, what it counts, and
 * a stress test of completions racing the application's unrefs on other
 * threads while call records are freed and reused (run under
 * ThreadSanitizer by scripts/test). */
#include <pthread.h>
#include <sched.h>

#include "check.h"
#include "store.h"
#include "tracker.h"

static const double def_buckets[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
static struct grpcprom_header *h;
static void *message = (void *)0x1, *no_message = NULL;
static int cancelled = 1, not_cancelled = 0;
static uint64_t ticket; /* what the last submit noted its operations in */

static struct grpcprom_method *slot(const char *path)
{
    return store_find(h, path, strlen(path));
}

static struct grpcprom_method *declared(const char *path, uint32_t bits)
{
    enum grpcprom_overflow_reason why;
    struct grpcprom_method *m = store_claim(h, path, strlen(path), &why);
    store_mark_type(m, GRPCPROM_REGISTERED | bits);
    return m;
}

static void start_call(uintptr_t call, struct grpcprom_method *m, const char *path, size_t path_len,
                       bool first_read, int64_t deadline)
{
    struct call_start s = {.call = call, .method = m, .path = path, .path_len = path_len,
                           .registered = m != NULL, .first_message_read = first_read,
                           .deadline_ns = deadline};
    tracker_call_started(&s);
}

static void start_path(uintptr_t call, const char *path)
{
    start_call(call, NULL, path, strlen(path), false, TRACKER_NO_DEADLINE);
}

/* Submits a batch as grpc_call_start_batch would, and completes it. */
static void run_batch(uintptr_t call, struct batch_ops ops, bool success)
{
    tracker_batch_submit(call, &ops, &ticket);
    tracker_batch_done(call, ops.ops, success);
}

static struct batch_ops status_op(int code, bool with_message)
{
    return (struct batch_ops){.ops = BATCH_SEND_STATUS | (with_message ? BATCH_SEND_MESSAGE : 0),
                              .status_code = code};
}

static const struct batch_ops send_op = {.ops = BATCH_SEND_MESSAGE};
static const struct batch_ops recv_op = {.ops = BATCH_RECV_MESSAGE, .recv_message = &message};
static const struct batch_ops end_of_stream_op = {.ops = BATCH_RECV_MESSAGE, .recv_message = &no_message};
static const struct batch_ops cancelled_op = {.ops = BATCH_RECV_CLOSE, .cancelled = &cancelled};

static uint64_t handled_total(const struct grpcprom_method *m)
{
    uint64_t n = 0;
    for (int c = 0; c < GRPCPROM_CODES; c++)
        n += m->handled[c];
    return n;
}

static void test_unary(void)
{
    struct grpcprom_method *unary = declared("/t.S/Unary", 0);

    /* OK: one received (read by gRPC), one sent, handled OK. */
    start_call(0x1000, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    CHECK_INT(unary->started, 1);
    run_batch(0x1000, status_op(0, true), true);
    tracker_call_unref(0x1000);
    CHECK_INT(unary->msg_received, 1);
    CHECK_INT(unary->msg_sent, 1);
    CHECK_INT(unary->handled[0], 1);

    /* Error: a message sent with a non-OK status is not counted. */
    start_call(0x1000, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(0x1000, status_op(5, true), true);
    tracker_call_unref(0x1000);
    CHECK_INT(unary->msg_sent, 1);
    CHECK_INT(unary->handled[5], 1);

    /* Extra references delay the end; a status batch that fails means the
     * client never saw the status nor the reply: Canceled, nothing sent. */
    start_call(0x2000, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    tracker_call_ref(0x2000);
    tracker_call_unref(0x2000);
    run_batch(0x2000, status_op(0, true), false);
    tracker_call_unref(0x2000);
    CHECK_INT(unary->handled[1], 1);
    CHECK_INT(unary->msg_sent, 1);

    /* The reference the application keeps holds the call past another's
     * unref: the status that follows is the one counted. */
    start_call(0x2040, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    tracker_call_ref(0x2040);
    tracker_call_unref(0x2040);
    run_batch(0x2040, status_op(6, false), true);
    tracker_call_unref(0x2040);
    CHECK_INT(unary->handled[6], 1);
    CHECK_INT(unary->handled[1], 1);

    /* A cancel past the deadline is DeadlineExceeded, and counted once. */
    start_call(0x2000, unary, NULL, 0, true, tracker_now_ns() - 1);
    run_batch(0x2000, cancelled_op, true);
    CHECK_INT(unary->handled[4], 1);
    run_batch(0x2000, status_op(0, true), true);
    tracker_call_unref(0x2000);
    CHECK_INT(unary->handled[4], 1);
    CHECK_INT(unary->handled[0], 1);
    CHECK_INT(unary->msg_sent, 1);

    /* A close that says not cancelled changes nothing. */
    start_call(0x2080, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(0x2080, (struct batch_ops){.ops = BATCH_RECV_CLOSE, .cancelled = &not_cancelled}, true);
    run_batch(0x2080, status_op(0, true), true);
    tracker_call_unref(0x2080);
    CHECK_INT(unary->handled[0], 2);

    /* A call dropped without any status is Canceled. */
    start_call(0x2100, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    tracker_call_unref(0x2100);
    CHECK_INT(unary->handled[1], 2);

    /* A status submitted but not completed when the last reference goes
     * is the status the server sent, its reply with it. */
    start_call(0x2180, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    tracker_batch_submit(0x2180, &(struct batch_ops){.ops = BATCH_SEND_STATUS | BATCH_SEND_MESSAGE}, &ticket);
    tracker_call_unref(0x2180);
    tracker_batch_done(0x2180, BATCH_SEND_STATUS | BATCH_SEND_MESSAGE, true); /* after: ignored */
    CHECK_INT(unary->handled[0], 3);
    CHECK_INT(unary->msg_sent, 3);

    /* A refused batch is undone: its status does not count, a later one does. */
    start_call(0x2200, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    struct batch_ops refused = status_op(7, false);
    tracker_batch_refused(0x2200, tracker_batch_submit(0x2200, &refused, &ticket), ticket);
    run_batch(0x2200, status_op(0, true), true);
    tracker_call_unref(0x2200);
    CHECK_INT(unary->handled[7], 0);
    CHECK_INT(unary->handled[0], 4);

    /* A refusal reported after the call ended (a callback dropped the last
     * reference inside grpc_call_start_batch) leaves the record that now
     * serves the address alone. */
    uint64_t received = unary->msg_received, canceled = unary->handled[1], ok = unary->handled[0];
    uint64_t sent = unary->msg_sent;
    start_call(0x2240, unary, NULL, 0, false, TRACKER_NO_DEADLINE);
    unsigned noted = tracker_batch_submit(0x2240, &recv_op, &ticket);
    uint64_t old_ticket = ticket;
    tracker_call_unref(0x2240);
    start_call(0x2240, unary, NULL, 0, false, TRACKER_NO_DEADLINE);
    tracker_batch_submit(0x2240, &recv_op, &ticket);
    tracker_batch_refused(0x2240, noted, old_ticket);
    tracker_batch_done(0x2240, BATCH_RECV_MESSAGE, true);
    run_batch(0x2240, status_op(0, true), true);
    tracker_call_unref(0x2240);
    CHECK_INT(unary->msg_received, received + 1);
    CHECK_INT(unary->handled[1], canceled + 1);
    CHECK_INT(unary->handled[0], ok + 1);

    /* An address published again while its record lives (unrefs that went
     * past the shim): the old call ends Canceled, the new one is followed. */
    start_call(0x2280, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    start_call(0x2280, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    CHECK_INT(unary->handled[1], canceled + 2);
    run_batch(0x2280, status_op(0, true), true);
    tracker_call_unref(0x2280);
    CHECK_INT(unary->handled[0], ok + 2);
    sent += 2;

    /* Replies that fail after the deadline (the client is gone) count no
     * message, and never make a method look streaming: defect 3. */
    for (int i = 0; i < 5; i++) {
        start_call(0x2300, unary, NULL, 0, true, tracker_now_ns() - 1);
        run_batch(0x2300, send_op, false);
        run_batch(0x2300, status_op(0, false), false);
        tracker_call_unref(0x2300);
    }
    CHECK_INT(unary->msg_sent, sent);
    CHECK_INT(unary->handled[4], 1 + 5);
    CHECK_STR(grpcprom_type_label(unary->type_bits), "unary");
    CHECK_INT(handled_total(unary), unary->started);
}

static void test_streams(void)
{
    /* Each message received, or sent apart from the status, counts when it
     * completed; a registered method's client side is declared. */
    struct grpcprom_method *ss = declared("/t.S/Stream", 0);
    start_call(0x3000, ss, NULL, 0, true, TRACKER_NO_DEADLINE);
    for (int i = 0; i < 3; i++)
        run_batch(0x3000, recv_op, true);
    run_batch(0x3000, end_of_stream_op, true);
    for (int i = 0; i < 2; i++)
        run_batch(0x3000, send_op, true);
    run_batch(0x3000, send_op, false); /* a write that failed */
    run_batch(0x3000, status_op(0, false), true);
    tracker_call_unref(0x3000);
    CHECK_INT(ss->msg_received, 4);
    CHECK_INT(ss->msg_sent, 2);
    CHECK_STR(grpcprom_type_label(ss->type_bits), "server_stream");

    /* A stream's last message sent with a non-OK status counts (WriteLast,
     * WriteAndFinish), if it went out; a unary reply would not. */
    struct grpcprom_method *exact = declared("/t.S/Exact", GRPCPROM_TYPE_EXACT | GRPCPROM_SERVER_STREAMS);
    start_call(0x3100, exact, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(0x3100, send_op, true);
    run_batch(0x3100, status_op(14, true), true);
    tracker_call_unref(0x3100);
    start_call(0x3100, exact, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(0x3100, status_op(14, true), true); /* its only message, with the status */
    tracker_call_unref(0x3100);
    start_call(0x3100, exact, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(0x3100, status_op(14, true), false); /* the client had gone */
    tracker_call_unref(0x3100);
    CHECK_INT(exact->msg_sent, 3);
    CHECK_INT(exact->handled[14], 2);
    CHECK_INT(exact->handled[1], 1);

    /* One RECV_MESSAGE at a time: a second one, refused by gRPC, does not
     * replace where the first one lands. */
    struct grpcprom_method *cs = declared("/t.S/Client", GRPCPROM_CLIENT_STREAMS);
    start_call(0x3200, cs, NULL, 0, false, TRACKER_NO_DEADLINE);
    unsigned noted = tracker_batch_submit(0x3200, &recv_op, &ticket);
    CHECK_INT(noted, BATCH_RECV_MESSAGE);
    CHECK_INT(tracker_batch_submit(0x3200, &end_of_stream_op, &ticket), 0);
    tracker_batch_refused(0x3200, 0, ticket);
    tracker_batch_done(0x3200, BATCH_RECV_MESSAGE, true);
    run_batch(0x3200, status_op(0, true), true);
    tracker_call_unref(0x3200);
    CHECK_INT(cs->msg_received, 1);
    CHECK_INT(cs->msg_sent, 1);
    CHECK_STR(grpcprom_type_label(cs->type_bits), "client_stream");
}

static void test_unregistered_paths(void)
{
    /* A path gets its series only when the server answers other than
     * Unimplemented; until then nothing is visible. */
    start_path(0x4000, "/t.S/Dyn");
    run_batch(0x4000, recv_op, true);
    run_batch(0x4000, recv_op, true);
    CHECK(slot("/t.S/Dyn") == NULL);
    run_batch(0x4000, status_op(3, false), true);
    tracker_call_unref(0x4000);
    struct grpcprom_method *dyn = slot("/t.S/Dyn");
    CHECK(dyn != NULL);
    if (dyn) {
        CHECK_INT(dyn->started, 1);
        CHECK_INT(dyn->msg_received, 2);
        CHECK_INT(dyn->handled[3], 1);
        CHECK_STR(grpcprom_type_label(dyn->type_bits), "client_stream");
    }
    for (int i = 0; i < 5; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/no.Such/Path%d", i);
        start_path(0x5000, path);
        run_batch(0x5000, status_op(12, false), true);
        tracker_call_unref(0x5000);
        CHECK(slot(path) == NULL);
    }
    CHECK_INT(h->unknown_methods, 5);

    /* An invented path whose call ends before the server answered creates
     * no series either: it is counted under _OTHER as unanswered. */
    start_path(0x5100, "/no.Such/Cancelled");
    run_batch(0x5100, cancelled_op, true);
    tracker_call_unref(0x5100);
    start_path(0x5200, "/no.Such/Failed");
    run_batch(0x5200, status_op(0, true), false);
    tracker_call_unref(0x5200);
    CHECK(slot("/no.Such/Cancelled") == NULL);
    CHECK(slot("/no.Such/Failed") == NULL);
    struct grpcprom_method *other = grpcprom_region_overflow(h, 0);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_UNANSWERED], 2);
    CHECK_INT(other->started, 2);
    CHECK_INT(other->handled[1], 2);
    CHECK_INT(other->msg_sent, 0);

    /* Paths that cannot be a label: counted in full under _OTHER, by reason;
     * the reply of an OK unary call included. */
    start_path(0x5300, "/gen.Svc/M\xff");
    run_batch(0x5300, recv_op, true);
    run_batch(0x5300, status_op(0, true), true);
    tracker_call_unref(0x5300);
    char long_path[2000];
    memset(long_path, 'a', sizeof(long_path));
    long_path[0] = '/';
    start_call(0x5400, NULL, long_path, sizeof(long_path), false, TRACKER_NO_DEADLINE);
    run_batch(0x5400, status_op(0, true), true);
    tracker_call_unref(0x5400);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_INVALID_PATH], 1);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_PATH_TOO_LONG], 1);
    CHECK_INT(other->started, 4);
    CHECK_INT(other->msg_received, 1);
    CHECK_INT(other->msg_sent, 2);
    CHECK_INT(other->handled[0], 2);

    /* A path of exactly 1 KiB is a method like any other. */
    start_call(0x5500, NULL, long_path, GRPCPROM_PATH_MAX, false, TRACKER_NO_DEADLINE);
    run_batch(0x5500, status_op(0, true), true);
    tracker_call_unref(0x5500);
    struct grpcprom_method *kib = store_find(h, long_path, GRPCPROM_PATH_MAX);
    CHECK(kib != NULL && kib->handled[0] == 1);

    /* A registered method with no room is counted under _OTHER per call. */
    start_call(0x5600, grpcprom_region_overflow(h, 0), NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(0x5600, status_op(0, true), true);
    tracker_call_unref(0x5600);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_TABLE_FULL], 1);
    CHECK_INT(other->started, 5);

    /* Completions and unrefs of calls nobody tracks change nothing. */
    tracker_batch_done(0x999, BATCH_SEND_STATUS, true);
    tracker_call_unref(0x777);
    CHECK_INT(other->started, 5);
    CHECK_INT(h->calls_untracked, 0);
}

/* The call table holds GRPCPROM_MAX_CALLS calls; each call beyond that is
 * counted once as untracked, however many batches it runs. */
static void test_full_call_table(void)
{
    struct grpcprom_method *full = declared("/t.S/Full", 0);
    for (uintptr_t c = 0; c < 70; c++)
        start_call(0x10000 + c * 64, full, NULL, 0, true, TRACKER_NO_DEADLINE);
    CHECK_INT(full->started, 64);
    CHECK_INT(h->calls_untracked, 6);
    for (uintptr_t c = 0; c < 70; c++) {
        run_batch(0x10000 + c * 64, recv_op, true);
        run_batch(0x10000 + c * 64, status_op(0, true), true);
        tracker_call_unref(0x10000 + c * 64);
    }
    CHECK_INT(h->calls_untracked, 6);
    CHECK_INT(full->handled[0], 64);
    start_call(0x20000, full, NULL, 0, true, TRACKER_NO_DEADLINE); /* room again */
    tracker_call_unref(0x20000);
    CHECK_INT(full->started, 65);
}

/* The stress test. Each application thread runs calls of its own method on
 * a few keys of its own, like gRPC reusing a call's address once its last
 * completion is done; completer threads deliver the completions, racing the
 * application's final unref. Records are freed and claimed again for other
 * keys all the time. Every call ends with its own status code, so counts
 * that reach another call's record (a stale completion holding a reused
 * record) or a status read before it was written show up as codes or
 * messages on the wrong method. Run once with room for every call, where
 * each method's codes must be exactly the ones its calls sent, and once
 * with a table too small, where every call must still be counted once,
 * either in its method or as untracked. (The interleaving of a lookup, a
 * reuse and a hold is too narrow to hit reliably here: test_ptrmap.c sets
 * it up step by step.) */
#define APPS 2
#define COMPLETERS 2
#define KEYS 4
#define CALLS_PER_APP 20000

struct completion {
    uintptr_t call;
    unsigned ops;
    bool success;
    _Atomic int *done;
};

static struct {
    pthread_mutex_t lock;
    struct completion ring[256];
    unsigned head, tail;
    bool closing;
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void post(uintptr_t call, unsigned ops, bool success, _Atomic int *done)
{
    for (;;) {
        pthread_mutex_lock(&queue.lock);
        if (queue.tail - queue.head < 256) {
            queue.ring[queue.tail++ % 256] = (struct completion){call, ops, success, done};
            pthread_mutex_unlock(&queue.lock);
            return;
        }
        pthread_mutex_unlock(&queue.lock);
        sched_yield();
    }
}

static void *completer(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&queue.lock);
        bool have = queue.head != queue.tail, closing = queue.closing;
        struct completion c = have ? queue.ring[queue.head++ % 256] : (struct completion){0};
        pthread_mutex_unlock(&queue.lock);
        if (!have) {
            if (closing)
                return NULL;
            sched_yield();
            continue;
        }
        tracker_batch_done(c.call, c.ops, c.success);
        atomic_fetch_sub(c.done, 1);
    }
}

static void wait_zero(_Atomic int *n)
{
    while (atomic_load(n) != 0)
        sched_yield();
}

struct app {
    struct grpcprom_method *method;
    uintptr_t first_key;
    uint64_t codes[GRPCPROM_CODES]; /* what the application's calls ended with */
};

/* The code call i ends with: Canceled (by its client) for every third. */
static int stress_code(unsigned i)
{
    return i % 3 == 0 ? 1 : i % 3 == 1 ? 0 : 2 + (int)(i / 3 % 15);
}

static void *application(void *arg)
{
    struct app *app = arg;
    uint64_t app_ticket;
    void *landed[KEYS];
    int close_says[KEYS];
    _Atomic int outstanding[KEYS];
    for (int k = 0; k < KEYS; k++)
        atomic_init(&outstanding[k], 0);
    for (unsigned i = 0; i < CALLS_PER_APP; i++) {
        int k = (int)(i % KEYS);
        uintptr_t call = app->first_key + (uintptr_t)k * 64;
        wait_zero(&outstanding[k]); /* gRPC frees a call after its last completion */
        int code = stress_code(i);
        bool cancel = code == 1;
        app->codes[code]++;
        landed[k] = message;
        close_says[k] = cancel;
        start_call(call, app->method, NULL, 0, false, TRACKER_NO_DEADLINE);
        struct batch_ops close = {.ops = BATCH_RECV_CLOSE, .cancelled = &close_says[k]};
        struct batch_ops recv = {.ops = BATCH_RECV_MESSAGE, .recv_message = &landed[k]};
        tracker_batch_submit(call, &close, &app_ticket);
        tracker_batch_submit(call, &recv, &app_ticket);
        atomic_fetch_add(&outstanding[k], 1);
        post(call, BATCH_RECV_MESSAGE, true, &outstanding[k]);
        wait_zero(&outstanding[k]); /* the handler reads its request */
        if (cancel) {
            atomic_fetch_add(&outstanding[k], 1);
            post(call, BATCH_RECV_CLOSE, true, &outstanding[k]);
            wait_zero(&outstanding[k]); /* the client cancelled first */
        }
        struct batch_ops status = status_op(cancel ? 0 : code, true);
        tracker_batch_submit(call, &status, &app_ticket);
        atomic_fetch_add(&outstanding[k], cancel ? 1 : 2);
        post(call, BATCH_SEND_MESSAGE | BATCH_SEND_STATUS, !cancel, &outstanding[k]);
        if (!cancel)
            post(call, BATCH_RECV_CLOSE, true, &outstanding[k]);
        tracker_call_unref(call); /* racing the completions just posted */
    }
    for (int k = 0; k < KEYS; k++)
        wait_zero(&outstanding[k]);
    return NULL;
}

static void run_stress(size_t max_calls)
{
    struct grpcprom_header *region = store_create(def_buckets, 11, 16);
    h = region;
    CHECK_INT(tracker_init(region, max_calls), 0);
    struct app apps[APPS];
    pthread_t threads[APPS + COMPLETERS];
    queue.closing = false;
    for (int c = 0; c < COMPLETERS; c++)
        pthread_create(&threads[APPS + c], NULL, completer, NULL);
    for (int a = 0; a < APPS; a++) {
        char path[32];
        snprintf(path, sizeof(path), "/stress.S/App%d", a);
        apps[a] = (struct app){declared(path, 0), 0x100000 * (uintptr_t)(a + 1), {0}};
        pthread_create(&threads[a], NULL, application, &apps[a]);
    }
    for (int a = 0; a < APPS; a++)
        pthread_join(threads[a], NULL);
    pthread_mutex_lock(&queue.lock);
    queue.closing = true;
    pthread_mutex_unlock(&queue.lock);
    for (int c = 0; c < COMPLETERS; c++)
        pthread_join(threads[APPS + c], NULL);

    bool room = max_calls >= APPS * KEYS;
    uint64_t started = 0;
    for (int a = 0; a < APPS; a++) {
        const struct grpcprom_method *m = apps[a].method;
        CHECK_INT(m->msg_received, m->started);
        CHECK_INT(handled_total(m), m->started);
        CHECK_INT(m->msg_sent, m->handled[0]);
        for (int c = 0; c < GRPCPROM_CODES; c++) {
            if (room)
                CHECK_INT(m->handled[c], apps[a].codes[c]);
            else
                CHECK(m->handled[c] <= apps[a].codes[c]);
        }
        started += m->started;
    }
    CHECK_INT(started + region->calls_untracked, APPS * CALLS_PER_APP);
    if (room)
        CHECK_INT(region->calls_untracked, 0);
    fprintf(stderr, "stress, room for %zu calls: %llu calls followed, %llu untracked\n", max_calls,
            (unsigned long long)started, (unsigned long long)region->calls_untracked);
}

int main(void)
{
    h = store_create(def_buckets, 11, 64);
    CHECK(tracker_init(h, 64) == 0);
    test_unary();
    test_streams();
    test_unregistered_paths();
    test_full_call_table();
    run_stress(APPS * KEYS);
    run_stress(1);
    CHECK_DONE();
}
