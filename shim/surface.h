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

/* A followed call: held by the application's references and by each of
 * its batches whose event has not come yet, so that a batch completing
 * after the application let go still finds its record. */
struct surface_call;

/* Follows a published call, the application holding one reference to it;
 * `rec` NULL for a call the tracker had no room for (counted apart): then
 * its batches count nothing. false when the table is full. */
bool surface_follow(grpc_call *call, struct call_record *rec);
/* The followed call at this address, while the application holds it. */
struct surface_call *surface_find(grpc_call *call);
struct call_record *surface_record(const struct surface_call *c);

/* Before gRPC takes a batch of a followed call, completed with `tag`: the
 * call is held until its event. */
bool surface_note_batch(void *tag, struct surface_call *c, unsigned ops);
void surface_forget_batch(void *tag);
/* The event of `tag`, when it is a batch's: its call (still held: let go
 * of it once done), and what it did in *ops. */
struct surface_call *surface_take_batch(void *tag, unsigned *ops);

/* The application takes a reference to a call, or gives one up. */
void surface_ref(grpc_call *call);
/* True when that was the call's last hold (the application's last
 * reference, no batch of it waiting): the call is no longer followed, and
 * *rec is its record (NULL if it had none). */
bool surface_unref(grpc_call *call, struct call_record **rec);
/* A batch's event is done with: drops its hold, as surface_unref. */
bool surface_batch_done(struct surface_call *c, struct call_record **rec);

#endif
