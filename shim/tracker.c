/* tracker.c: one record per call gRPC publishes, from a fixed pool,
 * kept with the call itself (hooks.c puts it in a context slot of the call,
 * whose destroy function gRPC runs when it destroys the call). So every
 * batch and completion finds its record in the call, and the record lives
 * exactly as long as the call: no lookup, no reference counting.
 *
 * Why this is safe (gRPC 1.51, src/core/lib/surface/call.cc):
 * - A completion is matched by its call and by what its batch did, both
 *   read from the batch's BatchControl, never by tag: the C API lets
 *   batches share a tag. FilterStackCall::StartBatch refuses a second
 *   batch with an operation of a kind already in flight
 *   (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS), so a call and a kind name one
 *   batch, and the record keeps one pending RECV_MESSAGE and one
 *   RECV_CLOSE_ON_SERVER. One gap: gRPC clears its receiving flag when the
 *   receive is done, not when its batch completes (a batch completes after
 *   all of its operations), so a batch of SEND_MESSAGE and RECV_MESSAGE
 *   whose send is still going lets another RECV_MESSAGE in, which finds
 *   the earlier one still noted here: that message is not counted.
 *   libgrpc++, Python and Ruby never put the two in one batch.
 * - The record is alive whenever a hook reads it: the application holds a
 *   reference on the call while it starts a batch, and a batch holds one
 *   until its completion's `done` runs (BatchControl::PostCompletion),
 *   after our hook. ~FilterStackCall runs the context's destroy function
 *   once every reference is gone, and nothing reads the record after.
 * - A status is claimed (NONE -> CLAIMING), its code and time written, then
 *   published (SUBMITTED, release): whoever reads SUBMITTED reads both.
 *
 * A call's counts go to its method's slot as they happen. A call to a path
 * that has no slot yet keeps its counts in its record until its status: if
 * that is Unimplemented the path is nobody's method and gets no series (a
 * client chooses paths); if the server answered otherwise the slot is
 * created then; a path that cannot have one goes to an overflow slot. */
#include "tracker.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "log.h"
#include "store.h"

enum { STATUS_NONE = 0, STATUS_CLAIMING = 1, STATUS_SUBMITTED = 2, STATUS_DONE = 3 };
enum { CODE_OK = 0, CODE_CANCELLED = 1, CODE_DEADLINE_EXCEEDED = 4, CODE_UNIMPLEMENTED = 12 };
enum { SHORT_PATH = 96 }; /* most paths: kept in the record itself */

struct call_record {
    struct grpcprom_method *method;     /* NULL while the path has no slot */
    int64_t start_ns;
    int64_t deadline_ns;
    uint32_t path_len;                  /* its bytes: see record_path() */
    uint32_t epoch;                     /* the process's, when the call started */
    uint32_t shard;                     /* where its counts go: its first thread's CPU's */
    bool registered;
    _Atomic uint32_t status_state;
    _Atomic int32_t status_code;        /* valid in STATUS_SUBMITTED */
    _Atomic int64_t status_ns;
    _Atomic bool status_message;        /* a message went in the status's batch */
    void **_Atomic pending_recv;        /* the RECV_MESSAGE in flight: where it lands */
    int *_Atomic pending_close;         /* the RECV_CLOSE_ON_SERVER in flight */
    _Atomic uint32_t received;
    _Atomic uint32_t sent;              /* counted here only while method is NULL */
    _Atomic uint32_t stream_bits;       /* how this call streamed */
    _Atomic uint32_t next_free;         /* on the free stack: the next one's number */
    /* A client's call: its RECV_STATUS_ON_CLIENT in flight, when its send
     * and receive in flight started, the time of a message held (see
     * tracker_client_done), and client_flags. */
    int *_Atomic pending_status;
    _Atomic int64_t send_start_ns, recv_start_ns, status_start_ns;
    _Atomic int64_t held_send_ns, held_recv_ns;
    _Atomic uint32_t client_flags;
    char short_path[SHORT_PATH];        /* the path of a call without a slot, if short */
};

static struct grpcprom_header *region;
/* The pool: records handed out in order first, then from the free stack,
 * whose top word is (pops and pushes << 32 | record number), 0 when empty:
 * the count in it makes a stale compare-and-swap fail (no ABA). */
static struct call_record *records;
static uint32_t record_limit;
static _Atomic uint32_t never_used;
static _Atomic uint64_t free_top;
/* Longer paths of calls without a slot, beside their records: pages of it
 * are touched only by such calls. */
static char (*long_paths)[GRPCPROM_PATH_MAX];
/* Raised in a forked child: records of calls started before the fork are
 * the parent's, and the child neither counts nor reuses them. */
static uint32_t epoch;

/* Where a call without a slot keeps its path (too long ones are not kept:
 * they can never have a slot). */
static char *record_path(struct call_record *rec)
{
    if (rec->path_len <= SHORT_PATH)
        return rec->short_path;
    return long_paths[rec - records];
}

int64_t tracker_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int tracker_init(struct grpcprom_header *shared_region, size_t max_calls)
{
    if (max_calls == 0 || max_calls > UINT32_MAX / 2)
        return -EINVAL;
    /* Reserved, not committed: pages are touched as calls use them. */
    void *mem = mmap(NULL, max_calls * sizeof(struct call_record), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    void *paths = mmap(NULL, max_calls * GRPCPROM_PATH_MAX, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (paths == MAP_FAILED) {
        int err = errno;
        munmap(mem, max_calls * sizeof(struct call_record));
        return -err;
    }
    records = mem;
    long_paths = paths;
    record_limit = (uint32_t)max_calls;
    atomic_store(&never_used, 0);
    atomic_store(&free_top, 0);
    region = shared_region;
    return 0;
}

void tracker_forget_calls(void)
{
    epoch++;
}

/* A free record, or NULL when all are taken. Inlined, as give_back: a
 * server's call, the one to keep cheap, then pays no call for them. */
static inline __attribute__((always_inline)) struct call_record *take_record(void)
{
    uint64_t top = atomic_load_explicit(&free_top, memory_order_acquire);
    while ((uint32_t)top != 0) {
        struct call_record *rec = &records[(uint32_t)top - 1];
        uint64_t next = ((top >> 32) + 1) << 32 |
                        atomic_load_explicit(&rec->next_free, memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&free_top, &top, next, memory_order_acquire,
                                                  memory_order_acquire))
            return rec;
    }
    if (atomic_load_explicit(&never_used, memory_order_relaxed) >= record_limit)
        return NULL;
    uint32_t n = atomic_fetch_add_explicit(&never_used, 1, memory_order_relaxed);
    return n < record_limit ? &records[n] : NULL;
}

static inline __attribute__((always_inline)) void give_back(struct call_record *rec)
{
    uint32_t number = (uint32_t)(rec - records) + 1;
    uint64_t top = atomic_load_explicit(&free_top, memory_order_relaxed);
    do
        atomic_store_explicit(&rec->next_free, (uint32_t)top, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&free_top, &top, ((top >> 32) + 1) << 32 | number,
                                                  memory_order_release, memory_order_relaxed));
}

/* A record for a new call, server's or client's, or NULL when the table
 * is full: then the call is counted untracked (said once). Inlined, as
 * take_record. */
static inline __attribute__((always_inline)) struct call_record *new_record(void)
{
    struct call_record *rec = take_record();
    if (rec == NULL) {
        static atomic_bool said;
        store_untracked(region, &said, "the call table is full (GRPCPROM_MAX_CALLS calls in flight)");
    }
    return rec;
}

struct call_record *tracker_call_started(const struct call_start *start)
{
    struct call_record *rec = new_record();
    if (rec == NULL)
        return NULL;
    rec->method = start->method;
    if (rec->method == NULL)
        rec->method = store_find(region, GRPCPROM_SERVER, start->path, start->path_len);
    rec->start_ns = tracker_now_ns();
    rec->deadline_ns = start->deadline_ns;
    rec->registered = start->registered;
    rec->path_len = start->path_len > UINT32_MAX ? UINT32_MAX : (uint32_t)start->path_len;
    rec->epoch = epoch;
    rec->shard = store_shard(region);
    atomic_store_explicit(&rec->status_state, STATUS_NONE, memory_order_relaxed);
    atomic_store_explicit(&rec->status_message, false, memory_order_relaxed);
    atomic_store_explicit(&rec->pending_recv, NULL, memory_order_relaxed);
    atomic_store_explicit(&rec->pending_close, NULL, memory_order_relaxed);
    atomic_store_explicit(&rec->received, start->first_message_read ? 1 : 0, memory_order_relaxed);
    atomic_store_explicit(&rec->sent, 0, memory_order_relaxed);
    atomic_store_explicit(&rec->stream_bits, 0, memory_order_relaxed);
    struct grpcprom_method *m = rec->method;
    if (m) {
        if (atomic_load_explicit(&m->type_bits, memory_order_relaxed) & GRPCPROM_OVERFLOW)
            store_overflowed(region, GRPCPROM_OVERFLOW_TABLE_FULL, 1);
        struct grpcprom_counts *c = grpcprom_region_counts(region, m, rec->shard);
        store_add(&c->started, 1);
        if (start->first_message_read)
            store_add(&c->msg_received, 1);
    } else if (start->path_len <= GRPCPROM_PATH_MAX) {
        memcpy(record_path(rec), start->path, start->path_len);
    }
    return rec;
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
        store_add(&grpcprom_region_counts(region, rec->method, rec->shard)->msg_received, 1);
    if (n > 1)
        note_streaming(rec, GRPCPROM_CLIENT_STREAMS);
}

/* A message sent on its own, before the status: the call streams. */
static void count_sent(struct call_record *rec)
{
    atomic_fetch_add_explicit(&rec->sent, 1, memory_order_relaxed);
    if (rec->method)
        store_add(&grpcprom_region_counts(region, rec->method, rec->shard)->msg_sent, 1);
    note_streaming(rec, GRPCPROM_SERVER_STREAMS);
}

/* A client whose deadline expires cancels the stream itself, and its cancel
 * reaches the server before the server's own timer: the server starts its
 * clock when it reads the call's headers, later than the client started
 * its own, by however long a loaded server took to read them (measured:
 * over 10 ms with both cores busy). A cancel this close to the deadline is
 * the deadline. */
#define DEADLINE_SLACK_NS 50000000

/* The code a call ends with when its status never reached the client. */
static int cancel_code(const struct call_record *rec, int64_t now)
{
    if (rec->deadline_ns != TRACKER_NO_DEADLINE && now >= rec->deadline_ns - DEADLINE_SLACK_NS)
        return CODE_DEADLINE_EXCEEDED;
    return CODE_CANCELLED;
}

/* The slot a call without one is counted in, found or made at its end; NULL
 * for a call to a path nobody serves. A path gets a slot only from a status
 * the server sent, and not from Unimplemented, so a client that cancels
 * calls to invented paths creates no series. */
static struct grpcprom_method *slot_at_end(struct call_record *rec, int code, bool delivered)
{
    const char *path = record_path(rec);
    struct grpcprom_method *m = store_find(region, GRPCPROM_SERVER, path, rec->path_len);
    if (m)
        return m;
    if (delivered && code == CODE_UNIMPLEMENTED) {
        store_add(&region->unknown_methods, 1);
        return NULL;
    }
    enum grpcprom_overflow_reason why;
    if (delivered)
        m = store_claim(region, GRPCPROM_SERVER, path, rec->path_len, &why);
    else if (rec->path_len > GRPCPROM_PATH_MAX)
        why = GRPCPROM_OVERFLOW_PATH_TOO_LONG;
    else if (!grpcprom_label_text_ok(path, rec->path_len))
        why = GRPCPROM_OVERFLOW_INVALID_PATH;
    else
        why = GRPCPROM_OVERFLOW_UNANSWERED;
    if (m)
        return m;
    store_overflowed(region, why, 1);
    return grpcprom_region_overflow(region, GRPCPROM_SERVER,
                                    atomic_load_explicit(&rec->stream_bits, memory_order_relaxed));
}

/* True for the one caller that settles the call: whichever event, of the
 * server's or the client's, comes first. */
static inline __attribute__((always_inline)) bool settling_first(struct call_record *rec)
{
    uint32_t state = atomic_load_explicit(&rec->status_state, memory_order_acquire);
    do {
        if (state == STATUS_DONE)
            return false;
    } while (!atomic_compare_exchange_weak(&rec->status_state, &state, STATUS_DONE));
    return true;
}

/* Counts the call's end once, whichever event settles it first. `delivered`
 * says the status is the server's own; a message sent with it counts when
 * the call streams or ends OK, as go-grpc-prometheus counts a unary reply
 * only when the handler returned OK. */
static void settle(struct call_record *rec, int code, int64_t end_ns, bool delivered)
{
    if (!settling_first(rec))
        return;

    struct grpcprom_method *m = rec->method;
    uint32_t stream_bits = atomic_load_explicit(&rec->stream_bits, memory_order_relaxed);
    if (m == NULL) {
        m = slot_at_end(rec, code, delivered);
        if (m == NULL)
            return;
        store_mark_type(m, stream_bits);
    }
    struct grpcprom_counts *c = grpcprom_region_counts(region, m, rec->shard);
    if (rec->method == NULL) {
        store_add(&c->started, 1);
        store_add(&c->msg_received, atomic_load_explicit(&rec->received, memory_order_relaxed));
        store_add(&c->msg_sent, atomic_load_explicit(&rec->sent, memory_order_relaxed));
    }
    uint32_t type_bits = atomic_load_explicit(&m->type_bits, memory_order_relaxed);
    if (!(type_bits & GRPCPROM_TYPE_EXACT))
        type_bits |= stream_bits;
    if (delivered && atomic_load_explicit(&rec->status_message, memory_order_relaxed) &&
        (code == CODE_OK || (type_bits & GRPCPROM_SERVER_STREAMS)))
        store_add(&c->msg_sent, 1);
    uint64_t latency = end_ns > rec->start_ns ? (uint64_t)(end_ns - rec->start_ns) : 0;
    store_handled(region, c, code, latency);
}

/* The call ended without its status reaching the client: now. */
static void settle_cancelled(struct call_record *rec)
{
    int64_t now = tracker_now_ns();
    settle(rec, cancel_code(rec, now), now, false);
}

/* The call ended with the status the server submitted, at its time. */
static void settle_submitted(struct call_record *rec)
{
    settle(rec, atomic_load_explicit(&rec->status_code, memory_order_relaxed),
           atomic_load_explicit(&rec->status_ns, memory_order_relaxed), true);
}

void tracker_call_cancelled(struct call_record *rec, int code)
{
    if (rec->epoch == epoch &&
        atomic_load_explicit(&rec->status_state, memory_order_acquire) == STATUS_NONE)
        settle(rec, code, tracker_now_ns(), true);
}

/* gRPC destroys the call: settles it with the status the server submitted,
 * if any, else as cancelled (when nothing settled it before), and frees
 * its record. A record of the parent's, in a forked child, is left alone. */
void tracker_call_destroyed(void *arg)
{
    struct call_record *rec = arg;
    if (rec->epoch != epoch)
        return;
    if (atomic_load_explicit(&rec->status_state, memory_order_acquire) == STATUS_SUBMITTED)
        settle_submitted(rec);
    else if (atomic_load_explicit(&rec->status_state, memory_order_relaxed) != STATUS_DONE)
        settle_cancelled(rec);
    give_back(rec);
}

unsigned tracker_batch_submit(struct call_record *rec, const struct batch_ops *ops)
{
    if (rec->epoch != epoch)
        return 0;
    unsigned noted = 0;
    uint32_t none = STATUS_NONE;
    if ((ops->ops & BATCH_SEND_STATUS) &&
        atomic_compare_exchange_strong(&rec->status_state, &none, STATUS_CLAIMING)) {
        atomic_store_explicit(&rec->status_code, ops->status_code, memory_order_relaxed);
        atomic_store_explicit(&rec->status_ns, tracker_now_ns(), memory_order_relaxed);
        atomic_store_explicit(&rec->status_message, (ops->ops & BATCH_SEND_MESSAGE) != 0,
                              memory_order_relaxed);
        /* A settle that came first (a cancel) wins: then the state is DONE. */
        uint32_t claiming = STATUS_CLAIMING;
        atomic_compare_exchange_strong_explicit(&rec->status_state, &claiming, STATUS_SUBMITTED,
                                                memory_order_release, memory_order_relaxed);
        noted |= BATCH_SEND_STATUS;
    }
    void **no_recv = NULL;
    if ((ops->ops & BATCH_RECV_MESSAGE) &&
        atomic_compare_exchange_strong(&rec->pending_recv, &no_recv, ops->recv_message))
        noted |= BATCH_RECV_MESSAGE;
    int *no_close = NULL;
    if ((ops->ops & BATCH_RECV_CLOSE) &&
        atomic_compare_exchange_strong(&rec->pending_close, &no_close, ops->cancelled))
        noted |= BATCH_RECV_CLOSE;
    return noted;
}

/* No completion comes for a refused batch: what it noted is undone. */
void tracker_batch_refused(struct call_record *rec, unsigned noted)
{
    if (noted & BATCH_SEND_STATUS) {
        uint32_t submitted = STATUS_SUBMITTED;
        atomic_compare_exchange_strong(&rec->status_state, &submitted, STATUS_NONE);
    }
    if (noted & BATCH_RECV_MESSAGE)
        atomic_store(&rec->pending_recv, NULL);
    if (noted & BATCH_RECV_CLOSE)
        atomic_store(&rec->pending_close, NULL);
}

void tracker_batch_done(struct call_record *rec, unsigned ops, bool success)
{
    if (rec->epoch != epoch)
        return;
    if (ops & BATCH_RECV_MESSAGE) {
        void **landed = atomic_exchange(&rec->pending_recv, NULL);
        if (landed && success && *landed != NULL)
            count_received(rec);
        else if (landed && success)
            note_streaming(rec, GRPCPROM_CLIENT_STREAMS); /* end of stream seen */
    }
    if ((ops & BATCH_SEND_MESSAGE) && !(ops & BATCH_SEND_STATUS) && success)
        count_sent(rec);
    /* The close first: a batch that holds it completes with success even
     * when the status in it never reached the client (gRPC clears the
     * batch's error for RECV_CLOSE_ON_SERVER), and then only `cancelled`
     * tells. Ruby sends its status in one batch with the close. */
    if (ops & BATCH_RECV_CLOSE) {
        int *cancelled = atomic_exchange(&rec->pending_close, NULL);
        if (cancelled && success && *cancelled)
            settle_cancelled(rec);
    }
    /* gRPC cancels a call one of whose batches failed (FinishBatch,
     * ReceivingStreamReady): no status of the server's reaches the client
     * after it. A Ruby handler whose stream the client left stops at its
     * failed send and never sends a status at all. */
    if (!success)
        settle_cancelled(rec);
    else if ((ops & BATCH_SEND_STATUS) &&
             atomic_load_explicit(&rec->status_state, memory_order_acquire) == STATUS_SUBMITTED)
        settle_submitted(rec);
}

/* ---- a client's calls, counted as go-grpc-prometheus' client interceptors
 * count them. A unary call counts its request when it starts whatever
 * follows, its reply when it ends OK, and no per-message time; a stream
 * counts and times each message. The core does not say which a call is:
 * a message sent with the close, or received with the status, is what a
 * unary call does (and a stream's only request, or a client stream's
 * reply), so such a message is held until the call shows it streams
 * (another message, or one apart from the close or the status) or ends.
 * A stream that never got a message through is one that failed to open:
 * Go counts its start and its code alone. */
enum client_flag {
    SEND_WITH_CLOSE = 1u << 0,   /* the send in flight goes with the close */
    RECV_WITH_STATUS = 1u << 1,  /* the receive in flight goes with the status */
    SEND_STARTED = 1u << 2,      /* a message was submitted: a unary call's request */
    OPENED = 1u << 3,            /* a message went out or came in */
    HELD_SEND = 1u << 4,         /* a message sent with the close, not counted yet */
    HELD_SEND_OK = 1u << 5,
    HELD_RECV = 1u << 6,         /* a receive with the status, not counted yet */
    HELD_RECV_GOT = 1u << 7,
    SETTLED = 1u << 8,           /* the end is counted, and decided what the call is: */
    SETTLED_STREAM = 1u << 9,    /* a stream (else a unary call) */
    SETTLED_OK = 1u << 10,
    END_SEEN = 1u << 11,         /* a receive found no more messages */
    STATUS_ASKED_OPEN = 1u << 14, /* the status was asked for after a message went through */
    /* the call's own signs of streaming: GRPCPROM_CLIENT_STREAMS and
     * GRPCPROM_SERVER_STREAMS, shifted by CALL_STREAMS_SHIFT */
};
#define CALL_STREAMS_SHIFT 12
#define STREAM_BITS (GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS)
/* What tracker_client_submit notes besides the batch_op_bits: this batch
 * holds the call's first message. */
#define NOTED_FIRST_SEND (1u << 16)

/* The client slot of `path` (its type the server slot's when a descriptor
 * set declares it), or the client overflow slot; *why says why. */
static struct grpcprom_method *client_slot(const char *path, size_t len,
                                           enum grpcprom_overflow_reason *why)
{
    struct grpcprom_method *m = store_find(region, GRPCPROM_CLIENT, path, len);
    if (m)
        return m;
    m = store_claim(region, GRPCPROM_CLIENT, path, len, why);
    if (m == NULL) {
        store_overflowed(region, *why, 0);
        return grpcprom_region_overflow(region, GRPCPROM_CLIENT, 0);
    }
    struct grpcprom_method *server = store_find(region, GRPCPROM_SERVER, path, len);
    uint32_t declared = server ? atomic_load_explicit(&server->type_bits, memory_order_relaxed) : 0;
    if (declared & GRPCPROM_TYPE_EXACT)
        store_mark_type(m, GRPCPROM_TYPE_EXACT | (declared & STREAM_BITS));
    return m;
}

struct call_record *tracker_client_started(const char *path, size_t len, int64_t deadline_ns)
{
    struct call_record *rec = new_record();
    if (rec == NULL)
        return NULL;
    enum grpcprom_overflow_reason why;
    rec->method = client_slot(path, len, &why);
    if (atomic_load_explicit(&rec->method->type_bits, memory_order_relaxed) & GRPCPROM_OVERFLOW)
        store_add(&region->overflow_calls[why], 1);
    rec->start_ns = tracker_now_ns();
    rec->deadline_ns = deadline_ns;
    rec->epoch = epoch;
    rec->shard = store_shard(region);
    atomic_store_explicit(&rec->status_state, STATUS_NONE, memory_order_relaxed);
    atomic_store_explicit(&rec->pending_recv, NULL, memory_order_relaxed);
    atomic_store_explicit(&rec->pending_status, NULL, memory_order_relaxed);
    atomic_store_explicit(&rec->received, 0, memory_order_relaxed);
    atomic_store_explicit(&rec->sent, 0, memory_order_relaxed);
    atomic_store_explicit(&rec->client_flags, 0, memory_order_relaxed);
    store_add(&grpcprom_region_counts(region, rec->method, rec->shard)->started, 1);
    return rec;
}

/* How the call streams, `flags` being its client_flags: as its method is
 * declared, else as it or an earlier call of its method was seen to. */
static uint32_t client_stream_bits(const struct call_record *rec, uint32_t flags)
{
    uint32_t m = atomic_load_explicit(&rec->method->type_bits, memory_order_relaxed);
    if (!(m & GRPCPROM_TYPE_EXACT) || (m & GRPCPROM_OVERFLOW))
        m |= (flags >> CALL_STREAMS_SHIFT) & STREAM_BITS;
    return m & STREAM_BITS;
}

static struct grpcprom_counts *client_counts(const struct call_record *rec)
{
    return grpcprom_region_counts(region, rec->method, rec->shard);
}

/* A stream's message, as Go counts SendMsg and RecvMsg: each one timed,
 * counted when it went through. */
static void stream_message(struct call_record *rec, bool send, bool through, int64_t ns)
{
    struct grpcprom_counts *c = client_counts(rec);
    store_observe(region, c, send ? GRPCPROM_MSG_SEND : GRPCPROM_MSG_RECV, ns > 0 ? (uint64_t)ns : 0);
    if (through)
        store_add(send ? &c->msg_sent : &c->msg_received, 1);
}

enum held_fate { HELD_AS_STREAM, HELD_AS_UNARY_OK, HELD_DROPPED };

/* Takes the held messages (each exactly once, whoever gets there first)
 * and counts them as `fate` says: a stream's messages, a unary call's
 * reply (its request was counted when it ended), or nothing. */
static void release_held(struct call_record *rec, enum held_fate fate)
{
    uint32_t f = atomic_fetch_and(&rec->client_flags, ~(HELD_SEND | HELD_RECV));
    if (fate == HELD_AS_STREAM && (f & HELD_SEND))
        stream_message(rec, true, f & HELD_SEND_OK, atomic_load(&rec->held_send_ns));
    if (fate == HELD_AS_STREAM && (f & HELD_RECV))
        stream_message(rec, false, f & HELD_RECV_GOT, atomic_load(&rec->held_recv_ns));
    if (fate == HELD_AS_UNARY_OK && (f & HELD_RECV) && (f & HELD_RECV_GOT))
        store_add(&client_counts(rec)->msg_received, 1);
}

/* What becomes of a message held or done before the call is settled, as
 * a stream's: counted, unless the stream never opened. */
static enum held_fate stream_fate(uint32_t flags)
{
    return (flags & OPENED) ? HELD_AS_STREAM : HELD_DROPPED;
}

/* What becomes of a message once the call is settled: as it decided. */
static enum held_fate fate_after_end(uint32_t flags)
{
    if (flags & SETTLED_STREAM)
        return stream_fate(flags);
    return (flags & SETTLED_OK) ? HELD_AS_UNARY_OK : HELD_DROPPED;
}

/* Holds a message that may be a unary call's. Every change of the call's
 * flags is one atomic operation that returns what was there: whoever marks
 * last (this hold, the call's end, or its first sign of streaming) sees the
 * others' marks and releases what is held. */
static void hold(struct call_record *rec, uint32_t held, _Atomic int64_t *ns_field, int64_t ns)
{
    atomic_store(ns_field, ns);
    uint32_t now = atomic_fetch_or(&rec->client_flags, held) | held;
    if (now & SETTLED)
        release_held(rec, fate_after_end(now));
    else if (client_stream_bits(rec, now))
        release_held(rec, stream_fate(now));
}

/* A message done: `alone` when it went apart from the close (a send) or
 * the status (a receive), `before` messages of its kind before it. */
static void client_message(struct call_record *rec, bool send, bool through, int64_t ns, bool alone,
                           uint32_t before)
{
    uint32_t mark = through ? OPENED : 0;
    if (alone || before > 0) {
        uint32_t bit = send ? GRPCPROM_CLIENT_STREAMS : GRPCPROM_SERVER_STREAMS;
        store_mark_type(rec->method, bit);
        mark |= bit << CALL_STREAMS_SHIFT;
    }
    uint32_t flags = atomic_fetch_or(&rec->client_flags, mark) | mark;
    if (flags & SETTLED) { /* a message after the end (batches completing late) */
        enum held_fate fate = fate_after_end(flags);
        if (fate == HELD_AS_STREAM)
            stream_message(rec, send, through, ns);
        else if (fate == HELD_AS_UNARY_OK && !send && through && before == 0)
            store_add(&client_counts(rec)->msg_received, 1);
    } else if (client_stream_bits(rec, flags)) {
        /* Before the stream opened, a message that did not go through is
         * Go's NewStream failing: no SendMsg or RecvMsg happened. */
        release_held(rec, stream_fate(flags));
        if (flags & OPENED)
            stream_message(rec, send, through, ns);
    } else if (before == 0) {
        uint32_t held = send ? HELD_SEND | (through ? HELD_SEND_OK : 0)
                             : HELD_RECV | (through ? HELD_RECV_GOT : 0);
        hold(rec, held, send ? &rec->held_send_ns : &rec->held_recv_ns, ns);
    }
}

/* Counts the call's end once: its code and latency; a unary call's
 * request; what was held, as the call turned out to be. What it is, is
 * decided in the same atomic change that marks it settled. */
static void settle_client(struct call_record *rec, int code, int64_t end_ns)
{
    if (!settling_first(rec))
        return;
    uint32_t flags = atomic_load(&rec->client_flags), settled;
    do
        settled = SETTLED | (client_stream_bits(rec, flags) ? SETTLED_STREAM : 0) |
                  (code == CODE_OK ? SETTLED_OK : 0);
    while (!atomic_compare_exchange_weak(&rec->client_flags, &flags, flags | settled));
    flags |= settled;
    struct grpcprom_counts *c = client_counts(rec);
    if (!(flags & SETTLED_STREAM) && (flags & SEND_STARTED))
        store_add(&c->msg_sent, 1);
    release_held(rec, fate_after_end(flags));
    store_handled(region, c, code, end_ns > rec->start_ns ? (uint64_t)(end_ns - rec->start_ns) : 0);
}

/* Go ends a server stream only in the RecvMsg that finds no more messages,
 * and times that receive: a client that asks for the status once its
 * stream is under way, without such a receive (C++ Finish after a
 * cancel), has that ask timed as the receive. (The callback API asks for
 * the status when it starts the call, and reads to the end all the same.) */
static void terminal_receive(struct call_record *rec, int64_t ns)
{
    uint32_t flags = atomic_load(&rec->client_flags);
    if ((client_stream_bits(rec, flags) & GRPCPROM_SERVER_STREAMS) && (flags & STATUS_ASKED_OPEN) &&
        !(flags & END_SEEN) &&
        atomic_load_explicit(&rec->status_state, memory_order_relaxed) != STATUS_DONE)
        stream_message(rec, false, false, ns);
}

unsigned tracker_client_submit(struct call_record *rec, const struct batch_ops *ops)
{
    if (rec->epoch != epoch)
        return 0;
    unsigned noted = 0;
    int64_t now = tracker_now_ns();
    if (ops->ops & BATCH_SEND_MESSAGE) {
        atomic_store(&rec->send_start_ns, now);
        uint32_t with_close = (ops->ops & BATCH_SEND_CLOSE) ? SEND_WITH_CLOSE : 0;
        uint32_t was = atomic_fetch_or(&rec->client_flags, SEND_STARTED | with_close);
        noted |= BATCH_SEND_MESSAGE | ((was & SEND_STARTED) ? 0 : NOTED_FIRST_SEND);
    }
    void **no_recv = NULL;
    if ((ops->ops & BATCH_RECV_MESSAGE) &&
        atomic_compare_exchange_strong(&rec->pending_recv, &no_recv, ops->recv_message)) {
        atomic_store(&rec->recv_start_ns, now);
        if (ops->ops & BATCH_RECV_STATUS)
            atomic_fetch_or(&rec->client_flags, RECV_WITH_STATUS);
        else
            atomic_fetch_and(&rec->client_flags, ~RECV_WITH_STATUS);
        noted |= BATCH_RECV_MESSAGE;
    }
    int *no_status = NULL;
    if ((ops->ops & BATCH_RECV_STATUS) &&
        atomic_compare_exchange_strong(&rec->pending_status, &no_status, ops->status)) {
        atomic_store(&rec->status_start_ns, now);
        if (atomic_load(&rec->client_flags) & OPENED)
            atomic_fetch_or(&rec->client_flags, STATUS_ASKED_OPEN);
        noted |= BATCH_RECV_STATUS;
    }
    return noted;
}

void tracker_client_refused(struct call_record *rec, unsigned noted)
{
    if (noted & BATCH_SEND_MESSAGE)
        atomic_fetch_and(&rec->client_flags,
                         ~(SEND_WITH_CLOSE | ((noted & NOTED_FIRST_SEND) ? SEND_STARTED : 0)));
    if (noted & BATCH_RECV_MESSAGE)
        atomic_store(&rec->pending_recv, NULL);
    if (noted & BATCH_RECV_STATUS)
        atomic_store(&rec->pending_status, NULL);
}

void tracker_client_done(struct call_record *rec, unsigned ops, bool success)
{
    if (rec->epoch != epoch)
        return;
    int64_t now = tracker_now_ns();
    if (ops & BATCH_SEND_MESSAGE) {
        uint32_t flags = atomic_fetch_and(&rec->client_flags, ~SEND_WITH_CLOSE);
        uint32_t before = atomic_fetch_add(&rec->sent, 1);
        client_message(rec, true, success, now - atomic_load(&rec->send_start_ns),
                       !(flags & SEND_WITH_CLOSE), before);
    }
    if (ops & BATCH_RECV_MESSAGE) {
        void **landed = atomic_exchange(&rec->pending_recv, NULL);
        if (landed) {
            bool got = success && *landed != NULL;
            uint32_t before = got ? atomic_fetch_add(&rec->received, 1) : atomic_load(&rec->received);
            if (!got)
                atomic_fetch_or(&rec->client_flags, END_SEEN);
            bool alone = !(atomic_load(&rec->client_flags) & RECV_WITH_STATUS);
            client_message(rec, false, got, now - atomic_load(&rec->recv_start_ns), alone, before);
        }
    }
    if (ops & BATCH_RECV_STATUS) {
        int *status = atomic_exchange(&rec->pending_status, NULL);
        if (status) {
            terminal_receive(rec, now - atomic_load(&rec->status_start_ns));
            settle_client(rec, success ? *status : CODE_CANCELLED, now);
        }
    }
}

void tracker_client_destroyed(void *arg)
{
    struct call_record *rec = arg;
    if (rec->epoch != epoch)
        return;
    int64_t now = tracker_now_ns();
    settle_client(rec, cancel_code(rec, now), now);
    give_back(rec);
}
