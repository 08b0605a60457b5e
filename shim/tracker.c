/* tracker.c: per-call records in a lock-free map keyed by grpc_call*, and
 * per-batch records keyed by (tag, cq) for the completions that carry a
 * count: a received message, a close that says cancelled, a sent status.
 *
 * A call's counts go to its method's slot as they happen. A call to a path
 * that has no slot yet keeps its counts in its record until its status: if
 * that is Unimplemented the path is nobody's method and gets no series (a
 * client chooses paths); otherwise the slot is created then. */
#include "tracker.h"

#include <string.h>
#include <time.h>

#include "log.h"
#include "ptrmap.h"
#include "store.h"

enum { STATUS_NONE = 0, STATUS_SUBMITTED = 1, STATUS_DONE = 2 };
enum { CODE_OK = 0, CODE_CANCELLED = 1, CODE_DEADLINE_EXCEEDED = 4, CODE_UNIMPLEMENTED = 12 };

struct call_record {
    struct ptrmap_entry entry;          /* key: grpc_call* */
    uintptr_t cq;
    struct grpcprom_method *method;     /* NULL while the path has no slot */
    int64_t start_ns;
    int64_t deadline_ns;
    _Atomic uint32_t refs;
    _Atomic uint32_t status_state;
    int status_code;                    /* valid from STATUS_SUBMITTED */
    int64_t status_ns;
    _Atomic uint32_t received;
    _Atomic uint32_t sent;
    _Atomic uint32_t held_sent;         /* sent with the status: counts only if OK */
    _Atomic uint32_t stream_bits;       /* how this call streamed */
    bool registered;
    uint16_t path_len;
    char path[GRPCPROM_PATH_MAX];       /* kept while method is NULL */
};

struct batch_record {
    struct ptrmap_entry entry;          /* key: tag, key2: cq */
    struct call_record *call;
    uintptr_t call_key;
    void **recv_message;
    int *cancelled;
    bool send_status;
};

static struct grpcprom_header *region;
static struct ptrmap calls;
static struct ptrmap batches;

int64_t tracker_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t power_of_two_at_least(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

int tracker_init(struct grpcprom_header *shared_region, size_t max_calls)
{
    size_t capacity = power_of_two_at_least(max_calls * 2);
    int rc = ptrmap_init(&calls, capacity, sizeof(struct call_record));
    if (rc == 0)
        rc = ptrmap_init(&batches, capacity * 2, sizeof(struct batch_record));
    if (rc == 0)
        region = shared_region;
    return rc;
}

void tracker_forget_calls(void)
{
    ptrmap_clear(&calls);
    ptrmap_clear(&batches);
}

static struct call_record *find_call(uintptr_t call)
{
    return (struct call_record *)ptrmap_find(&calls, call, 0);
}

void tracker_call_started(const struct call_start *start)
{
    struct call_record *rec = (struct call_record *)ptrmap_claim(&calls, start->call, 0);
    if (rec == NULL) {
        store_add(&region->calls_untracked, 1);
        return;
    }
    rec->cq = start->cq;
    rec->method = start->method;
    if (rec->method == NULL)
        rec->method = store_method(region, start->path, start->path_len, false);
    rec->start_ns = tracker_now_ns();
    rec->deadline_ns = start->deadline_ns;
    atomic_init(&rec->refs, 1);
    atomic_init(&rec->status_state, STATUS_NONE);
    atomic_init(&rec->received, start->first_message_read ? 1 : 0);
    atomic_init(&rec->sent, 0);
    atomic_init(&rec->held_sent, 0);
    atomic_init(&rec->stream_bits, 0);
    rec->registered = start->registered;
    rec->path_len = 0;
    if (rec->method) {
        store_add(&rec->method->started, 1);
        if (start->first_message_read)
            store_add(&rec->method->msg_received, 1);
    } else if (start->path_len < GRPCPROM_PATH_MAX) {
        memcpy(rec->path, start->path, start->path_len);
        rec->path_len = (uint16_t)start->path_len;
    }
    ptrmap_publish(&rec->entry);
}

bool tracker_is_tracked(uintptr_t call)
{
    return find_call(call) != NULL;
}

/* Notes a way the call streamed: on its method at once, or kept until the
 * method gets a slot. A registered method's client side is declared. */
static void note_streaming(struct call_record *rec, uint32_t bit)
{
    if (bit == GRPCPROM_CLIENT_STREAMS && rec->registered)
        return;
    if (rec->method)
        store_mark_type(rec->method, bit);
    else
        atomic_fetch_or_explicit(&rec->stream_bits, bit, memory_order_relaxed);
}

static void count_received(struct call_record *rec)
{
    uint32_t n = atomic_fetch_add_explicit(&rec->received, 1, memory_order_relaxed) + 1;
    if (rec->method)
        store_add(&rec->method->msg_received, 1);
    if (n > 1)
        note_streaming(rec, GRPCPROM_CLIENT_STREAMS);
}

static void count_sent(struct call_record *rec)
{
    atomic_fetch_add_explicit(&rec->sent, 1, memory_order_relaxed);
    if (rec->method)
        store_add(&rec->method->msg_sent, 1);
    note_streaming(rec, GRPCPROM_SERVER_STREAMS);
}

/* A client whose deadline expires cancels the stream itself, and its cancel
 * reaches the server a little before the server's own timer (gRPC clients
 * send a timeout slightly longer than theirs): a cancel this close to the
 * deadline is the deadline. */
#define DEADLINE_SLACK_NS 10000000

/* The code a call ends with when its status never reached the client. */
static int cancel_code(const struct call_record *rec, int64_t now)
{
    if (rec->deadline_ns != TRACKER_NO_DEADLINE && now >= rec->deadline_ns - DEADLINE_SLACK_NS)
        return CODE_DEADLINE_EXCEEDED;
    return CODE_CANCELLED;
}

/* Counts the call's end once, whichever event settles it first. A path
 * with no slot gets one only from a status the server itself sent, and not
 * for Unimplemented: a client that cancels calls to invented paths must not
 * create series. */
static void settle(struct call_record *rec, int code, int64_t end_ns, bool sent_by_server)
{
    uint32_t state = atomic_load_explicit(&rec->status_state, memory_order_acquire);
    do {
        if (state == STATUS_DONE)
            return;
    } while (!atomic_compare_exchange_weak(&rec->status_state, &state, STATUS_DONE));

    uint32_t held = atomic_load_explicit(&rec->held_sent, memory_order_relaxed);
    uint64_t latency = end_ns > rec->start_ns ? (uint64_t)(end_ns - rec->start_ns) : 0;
    struct grpcprom_method *m = rec->method;
    if (m == NULL)
        m = store_method(region, rec->path, rec->path_len, false);
    if (m == NULL && sent_by_server && code != CODE_UNIMPLEMENTED)
        m = store_method(region, rec->path, rec->path_len, true);
    if (m == NULL) {
        store_add(code == CODE_UNIMPLEMENTED ? &region->unknown_methods : &region->calls_untracked, 1);
        return;
    }
    if (rec->method == NULL) {
        uint32_t bits = atomic_load_explicit(&rec->stream_bits, memory_order_relaxed);
        if (bits)
            store_mark_type(m, bits);
        store_add(&m->started, 1);
        store_add(&m->msg_received, atomic_load_explicit(&rec->received, memory_order_relaxed));
        store_add(&m->msg_sent, atomic_load_explicit(&rec->sent, memory_order_relaxed));
    }
    if (held && code == CODE_OK)
        store_add(&m->msg_sent, held);
    store_handled(region, m, code, latency);
}

struct batch_record *tracker_batch_submit(uintptr_t call, uintptr_t tag, const struct batch_ops *ops)
{
    if (!ops->send_status && !ops->recv_message && !ops->cancelled)
        return NULL;
    struct call_record *rec = find_call(call);
    if (rec == NULL)
        return NULL;
    /* The status is claimed first and kept in the call record, so the call
     * settles with it even when the batch table has no room. */
    uint32_t expected = STATUS_NONE;
    bool claimed_status = ops->send_status &&
        atomic_compare_exchange_strong(&rec->status_state, &expected, STATUS_SUBMITTED);
    if (claimed_status) {
        rec->status_code = ops->status_code;
        rec->status_ns = tracker_now_ns();
        if (ops->send_message)
            atomic_fetch_add_explicit(&rec->held_sent, 1, memory_order_relaxed);
    }
    struct batch_record *batch = (struct batch_record *)ptrmap_claim(&batches, tag, rec->cq);
    if (batch == NULL) {
        store_add(&region->calls_untracked, 1);
        return NULL;
    }
    batch->call = rec;
    batch->call_key = call;
    batch->recv_message = ops->recv_message;
    batch->cancelled = ops->cancelled;
    batch->send_status = claimed_status;
    ptrmap_publish(&batch->entry);
    return batch;
}

void tracker_batch_result(uintptr_t call, struct batch_record *batch, const struct batch_ops *ops,
                          bool accepted)
{
    if (!accepted) {
        /* No completion will come for a refused batch: the record is ours. */
        if (batch == NULL)
            return;
        if (batch->send_status) {
            uint32_t expected = STATUS_SUBMITTED;
            atomic_compare_exchange_strong(&batch->call->status_state, &expected, STATUS_NONE);
            if (ops->send_message)
                atomic_fetch_sub_explicit(&batch->call->held_sent, 1, memory_order_relaxed);
        }
        ptrmap_release(&batch->entry);
        return;
    }
    /* An accepted batch may have completed already: look the call up again. */
    struct call_record *rec = ops->send_message && !ops->send_status ? find_call(call) : NULL;
    if (rec)
        count_sent(rec);
}

/* Drops a reference; the last one settles the call (Canceled, unless a
 * status was submitted and never completed) and forgets it. */
static void unpin(struct call_record *rec)
{
    if (atomic_fetch_sub_explicit(&rec->refs, 1, memory_order_acq_rel) != 1)
        return;
    int64_t now = tracker_now_ns();
    if (atomic_load_explicit(&rec->status_state, memory_order_acquire) == STATUS_SUBMITTED)
        settle(rec, rec->status_code, rec->status_ns, true);
    else
        settle(rec, cancel_code(rec, now), now, false);
    ptrmap_release(&rec->entry);
}

/* Holds a call's record while a completion uses it: false when the call
 * is already gone. The holder that drops the last reference settles it. */
static bool pin(struct call_record *rec, uintptr_t call)
{
    uint32_t refs = atomic_load_explicit(&rec->refs, memory_order_acquire);
    do {
        if (refs == 0)
            return false;
    } while (!atomic_compare_exchange_weak(&rec->refs, &refs, refs + 1));
    if (find_call(call) == rec)
        return true;
    unpin(rec);
    return false;
}

void tracker_completion(uintptr_t cq, uintptr_t tag, bool success)
{
    struct batch_record *batch = (struct batch_record *)ptrmap_find(&batches, tag, cq);
    if (batch == NULL)
        return;
    struct call_record *rec = batch->call;
    uintptr_t call_key = batch->call_key;
    void **recv_message = batch->recv_message;
    int *cancelled = batch->cancelled;
    bool send_status = batch->send_status;
    ptrmap_release(&batch->entry);
    if (!pin(rec, call_key))
        return; /* the application let go of the call before this batch ended */

    int64_t now = tracker_now_ns();
    if (recv_message) {
        if (success && *recv_message != NULL)
            count_received(rec);
        else if (success)
            note_streaming(rec, GRPCPROM_CLIENT_STREAMS); /* end of stream seen */
    }
    if (send_status)
        settle(rec, success ? rec->status_code : cancel_code(rec, now),
               success ? rec->status_ns : now, success);
    if (cancelled && success && *cancelled)
        settle(rec, cancel_code(rec, now), now, false);
    unpin(rec);
}

void tracker_call_ref(uintptr_t call)
{
    struct call_record *rec = find_call(call);
    if (rec)
        atomic_fetch_add_explicit(&rec->refs, 1, memory_order_relaxed);
}

void tracker_call_unref(uintptr_t call)
{
    struct call_record *rec = find_call(call);
    if (rec)
        unpin(rec);
}
