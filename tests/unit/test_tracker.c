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
    return store_find(h, path, strlen(path));
}

static struct grpcprom_method *declared(const char *path, uint32_t bits)
{
    enum grpcprom_overflow_reason why;
    struct grpcprom_method *m = store_claim(h, path, strlen(path), &why);
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
    struct grpcprom_method *other = grpcprom_region_overflow(h, 0);
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
    struct grpcprom_method *kib = store_find(h, long_path, GRPCPROM_PATH_MAX);
    CHECK(kib != NULL && total(kib).handled[0] == 1);

    /* A registered method with no room is counted under _OTHER per call. */
    start_call(27, grpcprom_region_overflow(h, 0), NULL, 0, true, TRACKER_NO_DEADLINE);
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
    CHECK_DONE();
}
