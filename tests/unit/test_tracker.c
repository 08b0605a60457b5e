/* test_tracker.c: a call's life as the hooks report it, what it counts, and
 * a stress test of calls started, completed on other threads and destroyed
 * by whichever thread lets go last, while records are taken and given back
 * by several threads at once (run under ThreadSanitizer by scripts/test). */
#include <pthread.h>
#include <sched.h>

#include "check.h"
#include "store.h"
#include "tracker.h"

static const double def_buckets[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
static struct grpcprom_header *h;
static void *message = (void *)0x1, *no_message = NULL;
static int cancelled = 1, not_cancelled = 0;
/* The calls of the single-threaded tests: a number names a call, as its
 * address does in gRPC, and holds its record while it lives. */
static struct call_record *calls[256];

static struct grpcprom_method *slot(const char *path)
{
    return store_find(h, GRPCPROM_SERVER, path, strlen(path));
}

static struct grpcprom_method *declared(const char *path, uint32_t bits)
{
    enum grpcprom_overflow_reason why;
    struct grpcprom_method *m = store_claim(h, GRPCPROM_SERVER, path, strlen(path), &why);
    store_mark_type(m, GRPCPROM_REGISTERED | bits);
    return m;
}

static struct call_record *start(struct grpcprom_method *m, const char *path, size_t path_len,
                                 bool first_read, int64_t deadline)
{
    struct call_start s = {.method = m, .path = path, .path_len = path_len,
                           .registered = m != NULL, .first_message_read = first_read,
                           .deadline_ns = deadline};
    return tracker_call_started(&s);
}

static void start_call(int call, struct grpcprom_method *m, const char *path, size_t path_len,
                       bool first_read, int64_t deadline)
{
    calls[call] = start(m, path, path_len, first_read, deadline);
}

static void start_path(int call, const char *path)
{
    start_call(call, NULL, path, strlen(path), false, TRACKER_NO_DEADLINE);
}

/* Submits a batch as grpc_call_start_batch would, and completes it. */
static void run_batch(int call, struct batch_ops ops, bool success)
{
    tracker_batch_submit(calls[call], &ops);
    tracker_batch_done(calls[call], ops.ops, success);
}

/* gRPC destroys the call: its last reference is gone. */
static void destroy(int call)
{
    tracker_call_destroyed(calls[call]);
    calls[call] = NULL;
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

/* A method's counts, summed over the shards as the page does. */
static struct grpcprom_totals total(const struct grpcprom_method *m)
{
    struct grpcprom_totals t;
    grpcprom_region_sum(h, m, &t);
    return t;
}

static uint64_t handled_total(const struct grpcprom_method *m)
{
    struct grpcprom_totals t = total(m);
    uint64_t n = 0;
    for (int c = 0; c < GRPCPROM_CODES; c++)
        n += t.handled[c];
    return n;
}

static void test_unary(void)
{
    struct grpcprom_method *unary = declared("/t.S/Unary", 0);

    /* OK: one received (read by gRPC), one sent, handled OK. */
    start_call(1, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    CHECK_INT(total(unary).started, 1);
    run_batch(1, status_op(0, true), true);
    destroy(1);
    CHECK_INT(total(unary).msg_received, 1);
    CHECK_INT(total(unary).msg_sent, 1);
    CHECK_INT(total(unary).handled[0], 1);

    /* Error: a message sent with a non-OK status is not counted. */
    start_call(1, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(1, status_op(5, true), true);
    destroy(1);
    CHECK_INT(total(unary).msg_sent, 1);
    CHECK_INT(total(unary).handled[5], 1);

    /* A status batch that fails means the client never saw the status nor
     * the reply: Canceled, nothing sent. */
    start_call(2, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(2, status_op(0, true), false);
    destroy(2);
    CHECK_INT(total(unary).handled[1], 1);
    CHECK_INT(total(unary).msg_sent, 1);

    /* The status counts when it completes, not when the call is destroyed. */
    start_call(3, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(3, status_op(6, false), true);
    CHECK_INT(total(unary).handled[6], 1);
    destroy(3);
    CHECK_INT(total(unary).handled[6], 1);
    CHECK_INT(total(unary).handled[1], 1);

    /* A cancel past the deadline is DeadlineExceeded, and counted once. */
    start_call(2, unary, NULL, 0, true, tracker_now_ns() - 1);
    run_batch(2, cancelled_op, true);
    CHECK_INT(total(unary).handled[4], 1);
    run_batch(2, status_op(0, true), true);
    destroy(2);
    CHECK_INT(total(unary).handled[4], 1);
    CHECK_INT(total(unary).handled[0], 1);
    CHECK_INT(total(unary).msg_sent, 1);

    /* A close that says not cancelled changes nothing. */
    start_call(4, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(4, (struct batch_ops){.ops = BATCH_RECV_CLOSE, .cancelled = &not_cancelled}, true);
    run_batch(4, status_op(0, true), true);
    destroy(4);
    CHECK_INT(total(unary).handled[0], 2);

    /* A call destroyed without any status is Canceled. */
    start_call(5, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    destroy(5);
    CHECK_INT(total(unary).handled[1], 2);

    /* A status submitted whose completion the hooks never saw (counting
     * stopped meanwhile) is the status the server sent, its reply with it. */
    start_call(6, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    tracker_batch_submit(calls[6], &(struct batch_ops){.ops = BATCH_SEND_STATUS | BATCH_SEND_MESSAGE});
    destroy(6);
    CHECK_INT(total(unary).handled[0], 3);
    CHECK_INT(total(unary).msg_sent, 3);

    /* A refused batch is undone: its status does not count, a later one does. */
    start_call(7, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    struct batch_ops refused = status_op(7, false);
    tracker_batch_refused(calls[7], tracker_batch_submit(calls[7], &refused));
    run_batch(7, status_op(0, true), true);
    destroy(7);
    CHECK_INT(total(unary).handled[7], 0);
    CHECK_INT(total(unary).handled[0], 4);

    /* Replies that fail after the deadline (the client is gone) count no
     * message, and never make a method look streaming. */
    uint64_t sent = total(unary).msg_sent;
    for (int i = 0; i < 5; i++) {
        start_call(8, unary, NULL, 0, true, tracker_now_ns() - 1);
        run_batch(8, send_op, false);
        run_batch(8, status_op(0, false), false);
        destroy(8);
    }
    CHECK_INT(total(unary).msg_sent, sent);
    CHECK_INT(total(unary).handled[4], 1 + 5);
    CHECK_STR(grpcprom_type_label(unary->type_bits), "unary");

    /* Ruby's way: the status in one batch with the close. gRPC completes
     * such a batch with success even when the client was gone; the close's
     * `cancelled` says it was: Canceled, no reply counted. */
    uint64_t ok = total(unary).handled[0], canceled = total(unary).handled[1];
    sent = total(unary).msg_sent;
    struct batch_ops last = status_op(0, true);
    last.ops |= BATCH_RECV_CLOSE;
    last.cancelled = &cancelled;
    start_call(9, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(9, last, true);
    destroy(9);
    CHECK_INT(total(unary).handled[1], canceled + 1);
    CHECK_INT(total(unary).handled[0], ok);
    CHECK_INT(total(unary).msg_sent, sent);
    /* and when the client got it, it is the server's status */
    last.cancelled = &not_cancelled;
    start_call(9, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(9, last, true);
    destroy(9);
    CHECK_INT(total(unary).handled[0], ok + 1);
    CHECK_INT(total(unary).msg_sent, sent + 1);

    /* A batch that failed, even one of no counted operation (initial
     * metadata alone), ends the call: gRPC cancels it, and a Ruby handler
     * gives up there without sending a status. */
    canceled = total(unary).handled[1];
    start_call(10, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    tracker_batch_done(calls[10], 0, false);
    CHECK_INT(total(unary).handled[1], canceled + 1);
    run_batch(10, status_op(0, true), true); /* too late: counted once */
    destroy(10);
    CHECK_INT(total(unary).handled[1], canceled + 1);
    CHECK_INT(total(unary).handled[0], ok + 1);

    /* The server cancels with a status of its own (C++ does, with Internal,
     * for a request it cannot parse): that is the client's code, and the
     * cancellation that follows changes nothing. */
    uint64_t internal = total(unary).handled[13];
    start_call(11, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    tracker_call_cancelled(calls[11], 13);
    run_batch(11, cancelled_op, true);
    destroy(11);
    CHECK_INT(total(unary).handled[13], internal + 1);
    CHECK_INT(total(unary).handled[1], canceled + 1);
    /* after a status was sent, a cancel is too late to be the call's code */
    start_call(12, unary, NULL, 0, true, TRACKER_NO_DEADLINE);
    tracker_batch_submit(calls[12], &(struct batch_ops){.ops = BATCH_SEND_STATUS, .status_code = 0});
    tracker_call_cancelled(calls[12], 13);
    tracker_batch_done(calls[12], BATCH_SEND_STATUS, true);
    destroy(12);
    CHECK_INT(total(unary).handled[13], internal + 1);
    CHECK_INT(total(unary).handled[0], ok + 2);
    CHECK_INT(handled_total(unary), total(unary).started);
}

static void test_streams(void)
{
    /* Each message received, or sent apart from the status, counts when it
     * completed; a registered method's client side is declared. */
    struct grpcprom_method *ss = declared("/t.S/Stream", 0);
    start_call(10, ss, NULL, 0, true, TRACKER_NO_DEADLINE);
    for (int i = 0; i < 3; i++)
        run_batch(10, recv_op, true);
    run_batch(10, end_of_stream_op, true);
    for (int i = 0; i < 2; i++)
        run_batch(10, send_op, true);
    run_batch(10, send_op, false); /* a write that failed */
    run_batch(10, status_op(0, false), true);
    destroy(10);
    CHECK_INT(total(ss).msg_received, 4);
    CHECK_INT(total(ss).msg_sent, 2);
    CHECK_STR(grpcprom_type_label(ss->type_bits), "server_stream");

    /* A stream's last message sent with a non-OK status counts (WriteLast,
     * WriteAndFinish), if it went out; a unary reply would not. */
    struct grpcprom_method *exact = declared("/t.S/Exact", GRPCPROM_TYPE_EXACT | GRPCPROM_SERVER_STREAMS);
    start_call(11, exact, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(11, send_op, true);
    run_batch(11, status_op(14, true), true);
    destroy(11);
    start_call(11, exact, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(11, status_op(14, true), true); /* its only message, with the status */
    destroy(11);
    start_call(11, exact, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(11, status_op(14, true), false); /* the client had gone */
    destroy(11);
    CHECK_INT(total(exact).msg_sent, 3);
    CHECK_INT(total(exact).handled[14], 2);
    CHECK_INT(total(exact).handled[1], 1);

    /* One RECV_MESSAGE at a time: a second one, refused by gRPC, does not
     * replace where the first one lands. */
    struct grpcprom_method *cs = declared("/t.S/Client", GRPCPROM_CLIENT_STREAMS);
    start_call(12, cs, NULL, 0, false, TRACKER_NO_DEADLINE);
    unsigned noted = tracker_batch_submit(calls[12], &recv_op);
    CHECK_INT(noted, BATCH_RECV_MESSAGE);
    CHECK_INT(tracker_batch_submit(calls[12], &end_of_stream_op), 0);
    tracker_batch_refused(calls[12], 0);
    tracker_batch_done(calls[12], BATCH_RECV_MESSAGE, true);
    run_batch(12, status_op(0, true), true);
    destroy(12);
    CHECK_INT(total(cs).msg_received, 1);
    CHECK_INT(total(cs).msg_sent, 1);
    CHECK_STR(grpcprom_type_label(cs->type_bits), "client_stream");
}

static void test_unregistered_paths(void)
{
    /* A path gets its series only when the server answers other than
     * Unimplemented; until then nothing is visible. */
    start_path(20, "/t.S/Dyn");
    run_batch(20, recv_op, true);
    run_batch(20, recv_op, true);
    CHECK(slot("/t.S/Dyn") == NULL);
    run_batch(20, status_op(3, false), true);
    destroy(20);
    struct grpcprom_method *dyn = slot("/t.S/Dyn");
    CHECK(dyn != NULL);
    if (dyn) {
        CHECK_INT(total(dyn).started, 1);
        CHECK_INT(total(dyn).msg_received, 2);
        CHECK_INT(total(dyn).handled[3], 1);
        CHECK_STR(grpcprom_type_label(dyn->type_bits), "client_stream");
    }
    for (int i = 0; i < 5; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/no.Such/Path%d", i);
        start_path(21, path);
        run_batch(21, status_op(12, false), true);
        destroy(21);
        CHECK(slot(path) == NULL);
    }
    CHECK_INT(h->unknown_methods, 5);

    /* An invented path whose call ends before the server answered creates
     * no series either: it is counted under _OTHER as unanswered. */
    start_path(22, "/no.Such/Cancelled");
    run_batch(22, cancelled_op, true);
    destroy(22);
    start_path(23, "/no.Such/Failed");
    run_batch(23, status_op(0, true), false);
    destroy(23);
    CHECK(slot("/no.Such/Cancelled") == NULL);
    CHECK(slot("/no.Such/Failed") == NULL);
    struct grpcprom_method *other = grpcprom_region_overflow(h, GRPCPROM_SERVER, 0);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_UNANSWERED], 2);
    CHECK_INT(total(other).started, 2);
    CHECK_INT(total(other).handled[1], 2);
    CHECK_INT(total(other).msg_sent, 0);

    /* Paths that cannot be a label: counted in full under _OTHER, by reason;
     * the reply of an OK unary call included. */
    start_path(24, "/gen.Svc/M\xff");
    run_batch(24, recv_op, true);
    run_batch(24, status_op(0, true), true);
    destroy(24);
    char long_path[2000];
    memset(long_path, 'a', sizeof(long_path));
    long_path[0] = '/';
    start_call(25, NULL, long_path, sizeof(long_path), false, TRACKER_NO_DEADLINE);
    run_batch(25, status_op(0, true), true);
    destroy(25);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_INVALID_PATH], 1);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_PATH_TOO_LONG], 1);
    CHECK_INT(total(other).started, 4);
    CHECK_INT(total(other).msg_received, 1);
    CHECK_INT(total(other).msg_sent, 2);
    CHECK_INT(total(other).handled[0], 2);

    /* A path of exactly 1 KiB is a method like any other. */
    start_call(26, NULL, long_path, GRPCPROM_PATH_MAX, false, TRACKER_NO_DEADLINE);
    run_batch(26, status_op(0, true), true);
    destroy(26);
    struct grpcprom_method *kib = store_find(h, GRPCPROM_SERVER, long_path, GRPCPROM_PATH_MAX);
    CHECK(kib != NULL && total(kib).handled[0] == 1);

    /* A registered method with no room is counted under _OTHER per call. */
    start_call(27, grpcprom_region_overflow(h, GRPCPROM_SERVER, 0), NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(27, status_op(0, true), true);
    destroy(27);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_TABLE_FULL], 1);
    CHECK_INT(total(other).started, 5);

    CHECK_INT(h->calls_untracked, 0);
}

/* The pool holds GRPCPROM_MAX_CALLS records; each call beyond that is
 * counted once as untracked (the hooks then follow it no further), and
 * destroyed calls give their records back for new ones. */
static void test_full_call_table(void)
{
    struct grpcprom_method *full = declared("/t.S/Full", 0);
    uint64_t untracked = h->calls_untracked;
    for (int round = 1; round <= 3; round++) {
        for (int c = 0; c < 70; c++)
            start_call(100 + c, full, NULL, 0, true, TRACKER_NO_DEADLINE);
        CHECK_INT(total(full).started, 64 * round);
        CHECK_INT(h->calls_untracked, untracked + 6 * round);
        for (int c = 0; c < 70; c++) {
            if (calls[100 + c] == NULL)
                continue;
            run_batch(100 + c, recv_op, true);
            run_batch(100 + c, status_op(0, true), true);
            destroy(100 + c);
        }
        CHECK_INT(total(full).handled[0], 64 * round);
        CHECK_INT(total(full).msg_received, 2 * 64 * round);
    }
}

/* In a forked child, calls started before the fork are the parent's: their
 * completions and ends count nothing there, and new calls count as ever. */
static void test_fork(void)
{
    struct grpcprom_method *m = declared("/t.S/Fork", 0);
    start_call(30, m, NULL, 0, true, TRACKER_NO_DEADLINE);
    tracker_forget_calls();
    run_batch(30, status_op(0, true), true);
    destroy(30);
    CHECK_INT(total(m).started, 1);
    CHECK_INT(handled_total(m), 0);
    start_call(31, m, NULL, 0, true, TRACKER_NO_DEADLINE);
    run_batch(31, status_op(3, false), true);
    destroy(31);
    CHECK_INT(total(m).started, 2);
    CHECK_INT(total(m).handled[3], 1);
}

/* The stress test. Application threads run calls of their own method, a
 * few at a time; completer threads deliver the completions. A call holds a
 * reference for the application and one per posted completion, and
 * whichever thread drops the last one destroys it, as gRPC does: records
 * go back to the pool from every thread and are taken again at once by
 * others. Every call ends with its own status code, so a record handed to
 * two calls at once (a free stack that lost a push or popped twice), or a
 * status read before it was written, shows up as codes or messages on the
 * wrong method. Run once with room for every call, where each method's
 * codes must be exactly the ones its calls sent, and once with a pool too
 * small, where every call must still be counted once, either in its method
 * or as untracked. (An ABA on the free stack needs a thread paused between
 * two instructions: with the pops' and pushes' count taken out of the top
 * word, these runs fail only now and then.) */
#define APPS 3
#define COMPLETERS 2
#define IN_FLIGHT 4
#define CALLS_PER_APP 20000

struct stress_call {
    struct call_record *rec;
    _Atomic int refs;
    _Atomic int outstanding;      /* completions posted, not yet delivered */
    void *landed;
    int close_says;
};

struct completion {
    struct stress_call *call;
    unsigned ops;
    bool success;
};

static struct {
    pthread_mutex_t lock;
    struct completion ring[256];
    unsigned head, tail;
    bool closing;
} queue = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void unref(struct stress_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        tracker_call_destroyed(c->rec);
}

static void post(struct stress_call *c, unsigned ops, bool success)
{
    atomic_fetch_add(&c->refs, 1);
    atomic_fetch_add(&c->outstanding, 1);
    for (;;) {
        pthread_mutex_lock(&queue.lock);
        if (queue.tail - queue.head < 256) {
            queue.ring[queue.tail++ % 256] = (struct completion){c, ops, success};
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
        tracker_batch_done(c.call->rec, c.ops, c.success);
        unref(c.call); /* the batch's reference, dropped after `done` */
        atomic_fetch_sub(&c.call->outstanding, 1);
    }
}

static void wait_delivered(struct stress_call *c)
{
    while (atomic_load(&c->outstanding) != 0)
        sched_yield();
}

struct app {
    struct grpcprom_method *method;
    uint64_t codes[GRPCPROM_CODES]; /* what the application's calls ended with */
    uint64_t untracked;
};

/* The code call i ends with: Canceled (by its client) for every third. */
static int stress_code(unsigned i)
{
    return i % 3 == 0 ? 1 : i % 3 == 1 ? 0 : 2 + (int)(i / 3 % 15);
}

static void *application(void *arg)
{
    struct app *app = arg;
    static _Thread_local struct stress_call slots[IN_FLIGHT];
    for (unsigned i = 0; i < CALLS_PER_APP; i++) {
        struct stress_call *c = &slots[i % IN_FLIGHT];
        wait_delivered(c); /* the call that had this slot is gone from the queue */
        int code = stress_code(i);
        bool cancel = code == 1;
        c->rec = start(app->method, NULL, 0, false, TRACKER_NO_DEADLINE);
        if (c->rec == NULL) { /* the pool is empty: the hooks would follow it no further */
            app->untracked++;
            continue;
        }
        app->codes[code]++;
        atomic_store(&c->refs, 1);
        c->landed = message;
        c->close_says = cancel;
        struct batch_ops close = {.ops = BATCH_RECV_CLOSE, .cancelled = &c->close_says};
        struct batch_ops recv = {.ops = BATCH_RECV_MESSAGE, .recv_message = &c->landed};
        tracker_batch_submit(c->rec, &close);
        tracker_batch_submit(c->rec, &recv);
        post(c, BATCH_RECV_MESSAGE, true);
        wait_delivered(c); /* the handler reads its request */
        if (cancel) {
            post(c, BATCH_RECV_CLOSE, true);
            wait_delivered(c); /* the client cancelled first */
        }
        struct batch_ops status = status_op(cancel ? 0 : code, true);
        tracker_batch_submit(c->rec, &status);
        post(c, BATCH_SEND_MESSAGE | BATCH_SEND_STATUS, !cancel);
        if (!cancel)
            post(c, BATCH_RECV_CLOSE, true);
        unref(c); /* racing the completions just posted */
    }
    for (int k = 0; k < IN_FLIGHT; k++)
        wait_delivered(&slots[k]);
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
        apps[a] = (struct app){declared(path, 0), {0}, 0};
        pthread_create(&threads[a], NULL, application, &apps[a]);
    }
    for (int a = 0; a < APPS; a++)
        pthread_join(threads[a], NULL);
    pthread_mutex_lock(&queue.lock);
    queue.closing = true;
    pthread_mutex_unlock(&queue.lock);
    for (int c = 0; c < COMPLETERS; c++)
        pthread_join(threads[APPS + c], NULL);

    bool room = max_calls >= APPS * IN_FLIGHT;
    uint64_t started = 0, untracked = 0;
    for (int a = 0; a < APPS; a++) {
        const struct grpcprom_method *m = apps[a].method;
        CHECK_INT(total(m).msg_received, total(m).started);
        CHECK_INT(handled_total(m), total(m).started);
        CHECK_INT(total(m).msg_sent, total(m).handled[0]);
        for (int c = 0; c < GRPCPROM_CODES; c++)
            CHECK_INT(total(m).handled[c], apps[a].codes[c]);
        started += total(m).started;
        untracked += apps[a].untracked;
    }
    CHECK_INT(started + region->calls_untracked, APPS * CALLS_PER_APP);
    CHECK_INT(region->calls_untracked, untracked);
    if (room)
        CHECK_INT(region->calls_untracked, 0);
    else
        CHECK(region->calls_untracked > 0);
    fprintf(stderr, "stress, room for %zu calls: %llu calls followed, %llu untracked\n", max_calls,
            (unsigned long long)started, (unsigned long long)region->calls_untracked);
}


/* ---- a client's calls */

static int status_ok = 0, status_not_found = 5, status_unavailable = 14;

static struct grpcprom_method *client_slot_of(const char *path)
{
    return store_find(h, GRPCPROM_CLIENT, path, strlen(path));
}

static struct batch_ops client_op(unsigned ops, void **landing, int *status)
{
    return (struct batch_ops){.ops = ops, .recv_message = landing, .status = status};
}

static void client_batch(struct call_record *rec, struct batch_ops ops, bool success)
{
    tracker_client_submit(rec, &ops);
    tracker_client_done(rec, ops.ops, success);
}

/* The sample counts of one of a client slot's histograms. */
static uint64_t observed(const struct grpcprom_method *m, enum grpcprom_histogram which)
{
    struct grpcprom_totals t = total(m);
    uint64_t n = 0;
    for (uint32_t b = 0; b <= h->bucket_count; b++)
        n += t.buckets[GRPCPROM_HISTOGRAM_START(h, which) + b];
    return n;
}

/* Checks a client slot's counters and observation counts. */
static void check_client(const char *path, const char *type, uint64_t sent, uint64_t received,
                         uint64_t sends_timed, uint64_t receives_timed, int code, uint64_t handled)
{
    struct grpcprom_method *m = client_slot_of(path);
    CHECK(m != NULL);
    if (m == NULL)
        return;
    struct grpcprom_totals t = total(m);
    CHECK_STR(grpcprom_type_label(m->type_bits), type);
    CHECK_INT(t.msg_sent, sent);
    CHECK_INT(t.msg_received, received);
    CHECK_INT(observed(m, GRPCPROM_MSG_SEND), sends_timed);
    CHECK_INT(observed(m, GRPCPROM_MSG_RECV), receives_timed);
    CHECK_INT(t.handled[code], handled);
    CHECK_INT(handled_total(m), t.started);
    CHECK_INT(observed(m, GRPCPROM_HANDLING), t.started);
}

static void test_client_unary(void)
{
    /* One batch, as the C++ blocking stub and Ruby make it: the request
     * counts, the reply only when the call ends OK, nothing is timed. */
    const unsigned all = BATCH_SEND_MESSAGE | BATCH_SEND_CLOSE | BATCH_RECV_MESSAGE | BATCH_RECV_STATUS;
    struct call_record *rec = tracker_client_started("/c.S/Unary", 10, TRACKER_NO_DEADLINE);
    client_batch(rec, client_op(all, &message, &status_ok), true);
    tracker_client_destroyed(rec);
    rec = tracker_client_started("/c.S/Unary", 10, TRACKER_NO_DEADLINE);
    client_batch(rec, client_op(all, &no_message, &status_not_found), true);
    tracker_client_destroyed(rec);
    check_client("/c.S/Unary", "unary", 2, 1, 0, 0, 5, 1);

    /* Two batches, as C++'s asynchronous stub makes them; the status's may
     * complete first: the request counts all the same, once. */
    rec = tracker_client_started("/c.S/Async", 10, TRACKER_NO_DEADLINE);
    struct batch_ops send = client_op(BATCH_SEND_MESSAGE | BATCH_SEND_CLOSE, NULL, NULL);
    tracker_client_submit(rec, &send);
    client_batch(rec, client_op(BATCH_RECV_MESSAGE | BATCH_RECV_STATUS, &message, &status_ok), true);
    tracker_client_done(rec, send.ops, true);
    tracker_client_destroyed(rec);
    check_client("/c.S/Async", "unary", 1, 1, 0, 0, 0, 1);

    /* A call destroyed without asking its status: cancelled, or past its
     * deadline. */
    rec = tracker_client_started("/c.S/Left", 9, TRACKER_NO_DEADLINE);
    tracker_client_destroyed(rec);
    rec = tracker_client_started("/c.S/Left", 9, tracker_now_ns() - 1);
    tracker_client_destroyed(rec);
    struct grpcprom_totals t = total(client_slot_of("/c.S/Left"));
    CHECK_INT(t.handled[1], 1);
    CHECK_INT(t.handled[4], 1);
    CHECK_INT(t.msg_sent, 0);

    /* The client slot is not the server's of the same path. */
    CHECK(slot("/c.S/Unary") == NULL);

    /* A batch gRPC refused leaves nothing behind: its request neither
     * counts nor makes the next send look as if it went with the close. */
    rec = tracker_client_started("/c.S/Refused", 12, TRACKER_NO_DEADLINE);
    struct batch_ops refused = client_op(BATCH_SEND_MESSAGE | BATCH_SEND_CLOSE, NULL, NULL);
    tracker_client_refused(rec, tracker_client_submit(rec, &refused));
    tracker_client_destroyed(rec);
    rec = tracker_client_started("/c.S/Refused", 12, TRACKER_NO_DEADLINE);
    tracker_client_refused(rec, tracker_client_submit(rec, &refused));
    for (int i = 0; i < 2; i++)
        client_batch(rec, client_op(BATCH_SEND_MESSAGE, NULL, NULL), true);
    client_batch(rec, client_op(BATCH_RECV_MESSAGE | BATCH_RECV_STATUS, &message, &status_ok), true);
    tracker_client_destroyed(rec);
    check_client("/c.S/Refused", "client_stream", 2, 1, 2, 1, 0, 1);
    CHECK_INT(total(client_slot_of("/c.S/Refused")).handled[1], 1);

    /* A path that can have no series counts under _OTHER, with its reason. */
    uint64_t invalid = h->overflow_calls[GRPCPROM_OVERFLOW_INVALID_PATH];
    uint64_t full = h->overflow_calls[GRPCPROM_OVERFLOW_TABLE_FULL];
    rec = tracker_client_started("/c.S/\xff", 6, TRACKER_NO_DEADLINE);
    tracker_client_destroyed(rec);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_INVALID_PATH], invalid + 1);
    CHECK_INT(h->overflow_calls[GRPCPROM_OVERFLOW_TABLE_FULL], full);
    CHECK_INT(total(grpcprom_region_overflow(h, GRPCPROM_CLIENT, 0)).started, 1);
}

static void test_client_streams(void)
{
    /* Server stream: the request went with the close (held, then counted
     * as a stream's once a reply came alone), three replies, the end. */
    struct call_record *rec = tracker_client_started("/c.S/Down", 9, TRACKER_NO_DEADLINE);
    client_batch(rec, client_op(BATCH_SEND_MESSAGE | BATCH_SEND_CLOSE, NULL, NULL), true);
    for (int i = 0; i < 3; i++)
        client_batch(rec, client_op(BATCH_RECV_MESSAGE, &message, NULL), true);
    client_batch(rec, client_op(BATCH_RECV_MESSAGE, &no_message, NULL), true);
    client_batch(rec, client_op(BATCH_RECV_STATUS, NULL, &status_ok), true);
    tracker_client_destroyed(rec);
    check_client("/c.S/Down", "server_stream", 1, 3, 1, 4, 0, 1);

    /* Client stream: three requests alone, the reply with the status. */
    rec = tracker_client_started("/c.S/Up", 7, TRACKER_NO_DEADLINE);
    for (int i = 0; i < 3; i++)
        client_batch(rec, client_op(BATCH_SEND_MESSAGE, NULL, NULL), true);
    client_batch(rec, client_op(BATCH_SEND_CLOSE, NULL, NULL), true);
    client_batch(rec, client_op(BATCH_RECV_MESSAGE | BATCH_RECV_STATUS, &message, &status_ok), true);
    tracker_client_destroyed(rec);
    check_client("/c.S/Up", "client_stream", 3, 1, 3, 1, 0, 1);

    /* Bidi, ended by asking the status with no receive that found the end
     * (C++ Finish after a cancel): that is timed as Go's last RecvMsg. */
    rec = tracker_client_started("/c.S/Both", 9, TRACKER_NO_DEADLINE);
    client_batch(rec, client_op(BATCH_SEND_MESSAGE, NULL, NULL), true);
    client_batch(rec, client_op(BATCH_RECV_MESSAGE, &message, NULL), true);
    int cancelled_status = 1;
    client_batch(rec, client_op(BATCH_RECV_STATUS, NULL, &cancelled_status), true);
    tracker_client_destroyed(rec);
    check_client("/c.S/Both", "bidi_stream", 1, 1, 1, 2, 1, 1);

    /* The callback API asks for the status as it starts the call, which
     * often completes before the read that finds the end: that read is the
     * one timed, once. */
    rec = tracker_client_started("/c.S/Reactor", 12, TRACKER_NO_DEADLINE);
    struct batch_ops status = client_op(BATCH_RECV_STATUS, NULL, &status_ok);
    tracker_client_submit(rec, &status);
    client_batch(rec, client_op(BATCH_SEND_MESSAGE | BATCH_SEND_CLOSE, NULL, NULL), true);
    client_batch(rec, client_op(BATCH_RECV_MESSAGE, &message, NULL), true);
    tracker_client_done(rec, status.ops, true);
    client_batch(rec, client_op(BATCH_RECV_MESSAGE, &no_message, NULL), true);
    tracker_client_destroyed(rec);
    check_client("/c.S/Reactor", "server_stream", 1, 1, 1, 2, 0, 1);

    /* A stream that never got a message through failed to open: its start
     * and its code, nothing else; the first call of a method alike. */
    for (int i = 0; i < 2; i++) {
        const char *path = i ? "/c.S/Both" : "/c.S/Fresh";
        rec = tracker_client_started(path, strlen(path), TRACKER_NO_DEADLINE);
        client_batch(rec, client_op(BATCH_SEND_MESSAGE | BATCH_SEND_CLOSE, NULL, NULL), false);
        client_batch(rec, client_op(BATCH_RECV_MESSAGE, &no_message, NULL), false);
        client_batch(rec, client_op(BATCH_RECV_STATUS, NULL, &status_unavailable), true);
        tracker_client_destroyed(rec);
    }
    check_client("/c.S/Fresh", "server_stream", 0, 0, 0, 0, 14, 1);
    check_client("/c.S/Both", "bidi_stream", 1, 1, 1, 2, 14, 1);

    /* A method a descriptor set declares unary is counted as unary, however
     * its client batches its request. */
    declared("/c.S/Declared", 0);
    CHECK(store_find(h, GRPCPROM_SERVER, "/c.S/Declared", 13) != NULL);
    store_mark_type(slot("/c.S/Declared"), GRPCPROM_TYPE_EXACT);
    rec = tracker_client_started("/c.S/Declared", 13, TRACKER_NO_DEADLINE);
    client_batch(rec, client_op(BATCH_SEND_MESSAGE, NULL, NULL), true);
    client_batch(rec, client_op(BATCH_SEND_CLOSE, NULL, NULL), true);
    client_batch(rec, client_op(BATCH_RECV_MESSAGE | BATCH_RECV_STATUS, &message, &status_ok), true);
    tracker_client_destroyed(rec);
    check_client("/c.S/Declared", "unary", 1, 1, 0, 0, 0, 1);
}

/* Two threads complete one call's batches at once, as gRPC does when one
 * thread writes and another reads: the request held by one is released
 * exactly once, by whichever of the hold, the first reply alone or the
 * status comes last. Each round uses a method seen for the first time. */
enum { CLIENT_ROUNDS = 400 };
static struct call_record *race_call;
static pthread_barrier_t race_start;
static int race_kind; /* 0: a server stream, 1: a unary call in two batches */

/* Spins a while, longer or shorter from round to round, so that either
 * thread comes first in some rounds. */
static void stagger(int round, int salt)
{
    for (volatile int n = (round * 7 + salt) % 13 * 2000; n > 0; n--)
        ;
}

static void *race_sender(void *arg)
{
    (void)arg;
    for (int i = 0; i < CLIENT_ROUNDS; i++) {
        pthread_barrier_wait(&race_start);
        stagger(i, 0);
        tracker_client_done(race_call, BATCH_SEND_MESSAGE | BATCH_SEND_CLOSE, true);
        pthread_barrier_wait(&race_start);
    }
    return NULL;
}

static void test_client_race(void)
{
    pthread_t sender;
    pthread_barrier_init(&race_start, NULL, 2);
    pthread_create(&sender, NULL, race_sender, NULL);
    for (int i = 0; i < CLIENT_ROUNDS; i++) {
        char path[32];
        race_kind = i % 2;
        snprintf(path, sizeof(path), "/race.S/M%d", i);
        race_call = tracker_client_started(path, strlen(path), TRACKER_NO_DEADLINE);
        struct batch_ops send = client_op(BATCH_SEND_MESSAGE | BATCH_SEND_CLOSE, NULL, NULL);
        struct batch_ops recv = client_op(BATCH_RECV_MESSAGE | (race_kind ? BATCH_RECV_STATUS : 0),
                                          &message, &status_ok);
        tracker_client_submit(race_call, &send);
        tracker_client_submit(race_call, &recv);
        pthread_barrier_wait(&race_start);
        stagger(i, 5);
        tracker_client_done(race_call, recv.ops, true);
        if (race_kind == 0) {
            client_batch(race_call, client_op(BATCH_RECV_MESSAGE, &no_message, NULL), true);
            client_batch(race_call, client_op(BATCH_RECV_STATUS, NULL, &status_ok), true);
        }
        pthread_barrier_wait(&race_start);
        tracker_client_destroyed(race_call);
        if (race_kind == 0)
            check_client(path, "server_stream", 1, 1, 1, 2, 0, 1);
        else
            check_client(path, "unary", 1, 1, 0, 0, 0, 1);
    }
    pthread_join(sender, NULL);
    pthread_barrier_destroy(&race_start);
}

int main(void)
{
    h = store_create(def_buckets, 11, 64);
    CHECK(tracker_init(h, 64) == 0);
    test_unary();
    test_streams();
    test_unregistered_paths();
    test_full_call_table();
    test_fork();
    run_stress(APPS * IN_FLIGHT);
    run_stress(2);
    h = store_create(def_buckets, 11, 1024);
    CHECK(tracker_init(h, 64) == 0);
    test_client_unary();
    test_client_streams();
    test_client_race();
    CHECK_DONE();
}
