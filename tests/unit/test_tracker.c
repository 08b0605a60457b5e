/* test_tracker.c: a call's life as the hooks report it, and what it counts. */
#include "check.h"
#include "store.h"
#include "tracker.h"

static const double def_buckets[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
static struct grpcprom_header *h;

static struct grpcprom_method *slot(const char *path)
{
    return store_method(h, path, strlen(path), false);
}

static void start_call(uintptr_t call, struct grpcprom_method *m, const char *path,
                       bool first_read, int64_t deadline)
{
    struct call_start s = {.call = call, .cq = 0xc0, .method = m, .path = path,
                           .path_len = path ? strlen(path) : 0, .registered = m != NULL,
                           .first_message_read = first_read, .deadline_ns = deadline};
    tracker_call_started(&s);
}

/* Submits a batch, lets gRPC accept it, and completes it with `success`. */
static void run_batch(uintptr_t call, uintptr_t tag, struct batch_ops ops, bool success)
{
    struct batch_record *b = tracker_batch_submit(call, tag, &ops);
    tracker_batch_result(call, b, &ops, true);
    tracker_completion(0xc0, tag, success);
}

static struct batch_ops status_op(int code, bool with_message)
{
    return (struct batch_ops){.send_status = true, .status_code = code, .send_message = with_message};
}

int main(void)
{
    h = store_create(def_buckets, 11, 64);
    CHECK(tracker_init(h, 64) == 0);
    struct grpcprom_method *unary = store_method(h, "/t.S/Unary", 10, true);

    /* Unary OK: one received (read by gRPC), one sent, handled OK. */
    start_call(0x1000, unary, NULL, true, TRACKER_NO_DEADLINE);
    CHECK(tracker_is_tracked(0x1000));
    CHECK_INT(unary->started, 1);
    run_batch(0x1000, 0x10, status_op(0, true), true);
    tracker_call_unref(0x1000);
    CHECK(!tracker_is_tracked(0x1000));
    CHECK_INT(unary->msg_received, 1);
    CHECK_INT(unary->msg_sent, 1);
    CHECK_INT(unary->handled[0], 1);

    /* Unary error: a message sent with a non-OK status is not counted. */
    start_call(0x1000, unary, NULL, true, TRACKER_NO_DEADLINE);
    run_batch(0x1000, 0x10, status_op(5, true), true);
    tracker_call_unref(0x1000);
    CHECK_INT(unary->msg_sent, 1);
    CHECK_INT(unary->handled[5], 1);
    CHECK_STR(grpcprom_type_label(unary->type_bits), "unary");

    /* Extra references delay the end; a status batch that fails means the
     * client never saw the status: Canceled, or DeadlineExceeded once past. */
    start_call(0x2000, unary, NULL, true, TRACKER_NO_DEADLINE);
    tracker_call_ref(0x2000);
    tracker_call_unref(0x2000);
    CHECK(tracker_is_tracked(0x2000));
    run_batch(0x2000, 0x20, status_op(0, true), false);
    tracker_call_unref(0x2000);
    CHECK_INT(unary->handled[1], 1);
    CHECK_INT(unary->msg_sent, 1);

    start_call(0x2000, unary, NULL, true, tracker_now_ns() - 1);
    int cancelled = 1;
    run_batch(0x2000, 0x21, (struct batch_ops){.cancelled = &cancelled}, true);
    CHECK_INT(unary->handled[4], 1);
    run_batch(0x2000, 0x22, status_op(0, true), true); /* too late: counted once */
    tracker_call_unref(0x2000);
    CHECK_INT(unary->handled[4], 1);
    CHECK_INT(unary->handled[0], 1);

    /* A call dropped without any status is Canceled. */
    start_call(0x2100, unary, NULL, true, TRACKER_NO_DEADLINE);
    tracker_call_unref(0x2100);
    CHECK_INT(unary->handled[1], 2);

    /* A refused batch is undone: its status does not count. */
    start_call(0x2200, unary, NULL, true, TRACKER_NO_DEADLINE);
    struct batch_ops refused = status_op(7, false);
    tracker_batch_result(0x2200, tracker_batch_submit(0x2200, 0x23, &refused), &refused, false);
    run_batch(0x2200, 0x24, status_op(0, false), true);
    tracker_call_unref(0x2200);
    CHECK_INT(unary->handled[7], 0);
    CHECK_INT(unary->handled[0], 2);

    /* Streams: each message received or sent apart from the status counts. */
    struct grpcprom_method *bidi = store_method(h, "/t.S/Bidi", 9, true);
    start_call(0x3000, bidi, NULL, false, TRACKER_NO_DEADLINE);
    void *message = (void *)0x1, *none = NULL;
    for (int i = 0; i < 3; i++)
        run_batch(0x3000, 0x30, (struct batch_ops){.recv_message = &message}, true);
    run_batch(0x3000, 0x30, (struct batch_ops){.recv_message = &none}, true);
    for (int i = 0; i < 2; i++)
        run_batch(0x3000, 0x31, (struct batch_ops){.send_message = true}, true);
    run_batch(0x3000, 0x32, status_op(0, false), true);
    tracker_call_unref(0x3000);
    CHECK_INT(bidi->msg_received, 3);
    CHECK_INT(bidi->msg_sent, 2);
    CHECK_STR(grpcprom_type_label(bidi->type_bits), "server_stream"); /* registered: client side declared */

    /* An unregistered path gets its series only when the call does not end
     * Unimplemented; until then nothing is visible. */
    start_call(0x4000, NULL, "/t.S/Dyn", false, TRACKER_NO_DEADLINE);
    run_batch(0x4000, 0x40, (struct batch_ops){.recv_message = &message}, true);
    run_batch(0x4000, 0x40, (struct batch_ops){.recv_message = &message}, true);
    CHECK(slot("/t.S/Dyn") == NULL);
    run_batch(0x4000, 0x41, status_op(3, false), true);
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
        start_call(0x5000, NULL, path, false, TRACKER_NO_DEADLINE);
        run_batch(0x5000, 0x50, status_op(12, false), true);
        tracker_call_unref(0x5000);
        CHECK(slot(path) == NULL);
    }
    CHECK_INT(h->unknown_methods, 5);

    /* An invented path whose call is cancelled before any status creates no
     * series either: only a status the server sent can. */
    start_call(0x5100, NULL, "/no.Such/Cancelled", false, TRACKER_NO_DEADLINE);
    run_batch(0x5100, 0x51, (struct batch_ops){.cancelled = &cancelled}, true);
    tracker_call_unref(0x5100);
    start_call(0x5200, NULL, "/no.Such/Failed", false, TRACKER_NO_DEADLINE);
    run_batch(0x5200, 0x52, status_op(0, false), false);
    tracker_call_unref(0x5200);
    CHECK(slot("/no.Such/Cancelled") == NULL);
    CHECK(slot("/no.Such/Failed") == NULL);
    CHECK_INT(h->calls_untracked, 2);

    /* Latency runs from the start to the status being sent. */
    uint64_t total = 0;
    for (int b = 0; b <= 11; b++)
        total += unary->buckets[b];
    CHECK_INT(total, unary->handled[0] + unary->handled[1] + unary->handled[4] + unary->handled[5]);

    /* A completion that is not ours, and calls nobody tracks, change nothing. */
    tracker_completion(0xc0, 0x999, true);
    tracker_call_unref(0x777);
    CHECK_INT(h->calls_untracked, 2);
    CHECK_DONE();
}
