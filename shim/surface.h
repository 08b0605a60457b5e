/* surface.h: follows server calls through gRPC's public C API alone, for
 * libgrpc builds whose internals the shim does not know (or with
 * GRPCPROM_INTERNALS=0): the application's requests for calls, the batches
 * it starts, the events its completion queues hand it, and its references
 * to each call. What it sees is the same whatever the gRPC version; what it
 * cannot see are completions delivered through callback completion queues
 * (the C++ callback API), whose calls are counted apart (see hooks.c).
 *
 * Every tag names one outstanding request or batch: the C API allows two
 * to share a tag, and then the second is not followed. */
#ifndef GRPCPROM_SURFACE_H
#define GRPCPROM_SURFACE_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stdint.h>

#include "layout.h"
#include "tracker.h"

/* Where gRPC writes a requested call and what comes with it. */
struct surface_request {
    grpc_call **call;
    void *registered_method;        /* NULL for grpc_server_request_call */
    grpc_call_details *details;     /* with registered_method NULL */
    gpr_timespec *deadline;         /* with registered_method */
    grpc_byte_buffer **payload;     /* with registered_method, or NULL */
};

/* Maps the tables, sized for `max_calls` calls in flight; 0 or -errno. */
int surface_init(size_t max_calls);

/* A completion queue whose completions run callbacks (created so): its
 * requests are never seen completing. */
void surface_callback_queue(grpc_completion_queue *cq, bool is_callback);
bool surface_is_callback_queue(grpc_completion_queue *cq);

/* Before gRPC takes a request completed with `tag`: false when it is not
 * followed (a tag in use, or a full table). */
bool surface_note_request(void *tag, const struct surface_request *where);
void surface_forget_request(void *tag);
/* The event of `tag`, when it is a request's: fills *out. */
bool surface_take_request(void *tag, struct published_call *out);

/* Follows a published call with its record, the application holding one
 * reference to it. */
void surface_follow(grpc_call *call, struct call_record *rec);
/* The record of a followed call, and the number of this following (a call
 * at the same address later is another). */
struct call_record *surface_record(grpc_call *call, uint64_t *serial);

/* Before gRPC takes a batch of a followed call, completed with `tag`. */
bool surface_note_batch(void *tag, grpc_call *call, uint64_t serial, unsigned ops);
void surface_forget_batch(void *tag);
/* The event of `tag`, when it is a batch's of a call still followed: its
 * record, and what it did in *ops. */
struct call_record *surface_take_batch(void *tag, unsigned *ops);

/* The application takes or gives up a reference to a call. The record
 * when that was its last one: the call is no longer followed. */
void surface_ref(grpc_call *call);
struct call_record *surface_unref(grpc_call *call);

#endif
