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
    uintptr_t cq;                     /* where its batches complete */
    struct grpcprom_method *method;   /* a registered method's slot, or NULL */
    const char *path;                 /* with method NULL: the :path, len bytes */
    size_t path_len;
    bool registered;                  /* the client side's streaming is declared */
    bool first_message_read;          /* gRPC read the request for the handler */
    int64_t deadline_ns;              /* CLOCK_MONOTONIC, or TRACKER_NO_DEADLINE */
};

/* What a batch does, as far as the metrics care. */
struct batch_ops {
    bool send_message;
    bool send_status;
    int status_code;
    void **recv_message;   /* RECV_MESSAGE's grpc_byte_buffer**, or NULL */
    int *cancelled;        /* RECV_CLOSE_ON_SERVER's int*, or NULL */
};

struct batch_record;

/* Maps the tables (room for `max_calls` calls in flight); 0 or -errno. */
int tracker_init(struct grpcprom_header *region, size_t max_calls);
/* In a forked child: forgets the parent's calls. */
void tracker_forget_calls(void);

void tracker_call_started(const struct call_start *start);
bool tracker_is_tracked(uintptr_t call);

/* Before the real grpc_call_start_batch: records what the batch means, since
 * it may complete on another thread before the real function returns.
 * Returns a handle for tracker_batch_result, or NULL when nothing to follow. */
struct batch_record *tracker_batch_submit(uintptr_t call, uintptr_t tag, const struct batch_ops *ops);
/* After it: `accepted` is false when gRPC refused the batch. */
void tracker_batch_result(uintptr_t call, struct batch_record *batch, const struct batch_ops *ops,
                          bool accepted);
/* A completion about to be posted to `cq` for `tag`. */
void tracker_completion(uintptr_t cq, uintptr_t tag, bool success);

void tracker_call_ref(uintptr_t call);
/* Before the real unref: on the last reference, settles and forgets the call. */
void tracker_call_unref(uintptr_t call);

/* The clock every latency is measured with. */
int64_t tracker_now_ns(void);

#endif
