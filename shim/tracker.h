/* tracker.h: follows each server call from the moment gRPC hands it to the
 * application to its status, and adds what it saw to the region. It knows
 * nothing of gRPC's types: the hooks decode calls and batches for it, and
 * keep each call's record with the call itself, so that gRPC hands it back
 * with every batch and gives it up when it destroys the call. */
#ifndef GRPCPROM_TRACKER_H
#define GRPCPROM_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "region.h"

#define TRACKER_NO_DEADLINE INT64_MAX

/* A call as gRPC publishes it to the application. */
struct call_start {
    struct grpcprom_method *method;   /* a registered method's slot, or NULL */
    const char *path;                 /* with method NULL: the :path, len bytes */
    size_t path_len;
    bool registered;                  /* the client side's streaming is declared */
    bool first_message_read;          /* gRPC read the request for the handler */
    int64_t deadline_ns;              /* tracker_now_ns's clock, or TRACKER_NO_DEADLINE */
};

/* The operations of a batch that the counts follow, as a server's call
 * has them; a client's call has the same bits under the names below.  gRPC runs at most one
 * batch of each kind at a time on a call (it refuses a second one with
 * GRPC_CALL_ERROR_TOO_MANY_OPERATIONS), so a call and a kind name a batch
 * (tracker.c says where that bends). */
enum batch_op_bits {
    BATCH_SEND_MESSAGE = 1u << 0,
    BATCH_SEND_STATUS = 1u << 1,
    BATCH_RECV_MESSAGE = 1u << 2,
    BATCH_RECV_CLOSE = 1u << 3,
};

/* gRPC's transport sends a client's close as it sends a server's status,
 * and receives a client's status as a server's close: a completed batch
 * names each pair with one bit. */
#define BATCH_SEND_CLOSE BATCH_SEND_STATUS
#define BATCH_RECV_STATUS BATCH_RECV_CLOSE

/* What a batch asks for. */
struct batch_ops {
    unsigned ops;          /* batch_op_bits */
    int status_code;       /* with BATCH_SEND_STATUS */
    void **recv_message;   /* with BATCH_RECV_MESSAGE: its grpc_byte_buffer** */
    int *cancelled;        /* with BATCH_RECV_CLOSE on a server: its int* */
    int *status;           /* with BATCH_RECV_STATUS on a client: its grpc_status_code* */
};

/* One call's record, from its publication until gRPC destroys it. */
struct call_record;

/* Maps the pool of records, `max_calls` of them; 0 or -errno. */
int tracker_init(struct grpcprom_header *region, size_t max_calls);
/* In a forked child: the parent's calls are the parent's to count. */
void tracker_forget_calls(void);

/* Counts a call gRPC publishes and returns its record, or NULL when every
 * record is taken (then the call is counted as untracked, once). */
struct call_record *tracker_call_started(const struct call_start *start);

/* Before the real grpc_call_start_batch: notes what the batch's completion
 * will need, since it may complete on another thread before the real
 * function returns. Returns the operations it noted. */
unsigned tracker_batch_submit(struct call_record *rec, const struct batch_ops *ops);
/* After it, when gRPC refused the batch: forgets what was noted. */
void tracker_batch_refused(struct call_record *rec, unsigned noted);
/* A batch that did `ops` (batch_op_bits, maybe none of them) is about to
 * complete; one that failed ends the call as cancelled. */
void tracker_batch_done(struct call_record *rec, unsigned ops, bool success);

/* The server cancels the call with a status (grpc_call_cancel_with_status),
 * which the client gets: counted with it, unless a status was sent first. */
void tracker_call_cancelled(struct call_record *rec, int code);

/* gRPC destroys the call: settles it if its status did not, and frees the
 * record. Its signature is that of a call context's destroy function. */
void tracker_call_destroyed(void *rec);

/* ---- calls the process makes as a client (go-grpc-prometheus' client
 * metrics). Such a record is known by its destroy function,
 * tracker_client_destroyed. */

/* Counts a call the process starts to `path` (len bytes) and returns its
 * record, or NULL when every record is taken (counted untracked, once). */
struct call_record *tracker_client_started(const char *path, size_t len, int64_t deadline_ns);

/* As tracker_batch_submit and _refused, for a client's call. */
unsigned tracker_client_submit(struct call_record *rec, const struct batch_ops *ops);
void tracker_client_refused(struct call_record *rec, unsigned noted);

/* A batch of a client's call completes: messages count, and the status
 * the client got ends the call. */
void tracker_client_done(struct call_record *rec, unsigned ops, bool success);

/* gRPC destroys a client's call: a call whose status nobody asked for ends
 * as cancelled; frees the record. */
void tracker_client_destroyed(void *rec);

/* The clock every latency is measured with. */
int64_t tracker_now_ns(void);

#endif
