/* tracker.h: follows each server call from the moment gRPC hands it to the
 * application to its status, and adds what it saw to the region. It knows
 * nothing of gRPC's types: the hooks decode calls and batches for it. */
#ifndef GRPCPROM_TRACKER_H
#define GRPCPROM_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "region.h"

#define TRACKER_NO_DEADLINE INT64_MAX

/* A call as gRPC publishes it to the application. */
struct call_start {
    uintptr_t call;
    struct grpcprom_method *method;   /* a registered method's slot, or NULL */
    const char *path;                 /* with method NULL: the :path, len bytes */
    size_t path_len;
    bool registered;                  /* the client side's streaming is declared */
    bool first_message_read;          /* gRPC read the request for the handler */
    int64_t deadline_ns;              /* CLOCK_MONOTONIC, or TRACKER_NO_DEADLINE */
};

/* The operations of a batch that the counts follow. gRPC runs at most one
 * batch of each kind at a time on a call (it refuses a second one with
 * GRPC_CALL_ERROR_TOO_MANY_OPERATIONS), so a call and a kind name a batch
 * (tracker.c says where that bends). */
enum batch_op_bits {
    BATCH_SEND_MESSAGE = 1u << 0,
    BATCH_SEND_STATUS = 1u << 1,
    BATCH_RECV_MESSAGE = 1u << 2,
    BATCH_RECV_CLOSE = 1u << 3,
};

/* What a batch asks for. */
struct batch_ops {
    unsigned ops;          /* batch_op_bits */
    int status_code;       /* with BATCH_SEND_STATUS */
    void **recv_message;   /* with BATCH_RECV_MESSAGE: its grpc_byte_buffer** */
    int *cancelled;        /* with BATCH_RECV_CLOSE: its int* */
};

/* Maps the tables, with room for `max_calls` calls in flight; 0 or -errno. */
int tracker_init(struct grpcprom_header *region, size_t max_calls);
/* In a forked child: forgets the parent's calls. */
void tracker_forget_calls(void);

void tracker_call_started(const struct call_start *start);

/* Before the real grpc_call_start_batch: notes what the batch's completion
 * will need, since it may complete on another thread before the real
 * function returns. Returns the operations it noted, and in *ticket which
 * record it noted them in. */
unsigned tracker_batch_submit(uintptr_t call, const struct batch_ops *ops, uint64_t *ticket);
/* After it, when gRPC refused the batch: forgets what was noted, unless
 * the record has ended meanwhile (callbacks run inside the real function). */
void tracker_batch_refused(uintptr_t call, unsigned noted, uint64_t ticket);
/* A batch of `call` that did `ops` (batch_op_bits) is about to complete. */
void tracker_batch_done(uintptr_t call, unsigned ops, bool success);

void tracker_call_ref(uintptr_t call);
/* Before the real unref: on the last reference, settles and forgets the call. */
void tracker_call_unref(uintptr_t call);

/* The clock every latency is measured with. */
int64_t tracker_now_ns(void);

#endif
