/* layout.h: what the shim knows of one libgrpc build's internals: the two
 * internal functions it stands in for, where a server's RequestedCall keeps
 * the call it publishes, where a batch's record keeps its call, and the
 * context slot of a call where the shim keeps its own record of the call.
 * Another build is one more table entry. */
#ifndef GRPCPROM_LAYOUT_H
#define GRPCPROM_LAYOUT_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Debian bookworm's libgrpc29 (gRPC 1.51.1, absl inline namespace debian3). */
#define LAYOUT_SET_CQ_SYMBOL "_Z30grpc_call_set_completion_queueP9grpc_callP21grpc_completion_queue"
#define LAYOUT_END_OP_SYMBOL \
    "_Z14grpc_cq_end_opP21grpc_completion_queuePvN4absl7debian36StatusEPFvS1_P18grpc_cq_completionES1_S6_b"
#define CXX_REGISTER_SERVICE "_ZN4grpc13ServerBuilder15RegisterServiceEPNS_7ServiceE"
#define CXX_REGISTER_SERVICE_HOST \
    "_ZN4grpc13ServerBuilder15RegisterServiceERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEEPNS_7ServiceE"

struct libgrpc_layout {
    const char *core_version;          /* grpc_version_string() */
    const char *done_request_symbol;   /* the `done` of a published call */
    void *done_request_event;          /* resolved at run time */
    /* RequestedCall, the `done_arg` of a published call */
    size_t off_type, off_tag, off_call, off_storage, off_data, off_deadline, off_payload;
    /* FilterStackCall::BatchControl, the `done_arg` of a batch's completion:
     * its call, the byte of its transport op's flags, its completion */
    size_t off_batch_call, off_batch_flags, off_batch_completion;
    uint8_t flag_send_message, flag_send_status, flag_recv_message, flag_recv_close;
    uint8_t batch_ops_of_flags[256];    /* the flags byte as batch_op_bits, made at run time */
    /* FilterStackCall: its vtable (the symbol, and the address a call holds),
     * and its context element GRPC_CONTEXT_TRAFFIC ({value, destroy}), which
     * no part of gRPC uses; ~FilterStackCall calls destroy(value). */
    const char *call_vtable_symbol;
    size_t call_vtable_offset;
    const void *call_vtable;            /* resolved at run time */
    size_t off_context_slot;
    /* grpc_core::RegisteredCall, the handle grpc_channel_register_call
     * returns: where its path (a grpc_slice) is */
    size_t off_registered_path;
};

/* A context element of a call, as gRPC lays it out. */
struct layout_context_slot {
    void *value;
    void (*destroy)(void *value);
};

/* What a RequestedCall says about the call it publishes. */
struct published_call {
    grpc_call *call;
    void *registered_method;        /* the handle grpc_server_register_method returned, or NULL */
    grpc_call_details *details;     /* with registered_method NULL */
    gpr_timespec *deadline;
    grpc_byte_buffer **payload;     /* where gRPC put the first request, or NULL */
};

/* The layout of the libgrpc whose core version is `version`, or NULL;
 * `find_symbol` resolves libgrpc's internal symbols. */
const struct libgrpc_layout *layout_find(const char *version, void *(*find_symbol)(const char *));

/* Reads a RequestedCall after checking that it looks like one: 0, or -1
 * when the memory does not match the layout (then stop trusting it). */
int layout_read_request(const struct libgrpc_layout *layout, const void *rc, const void *tag,
                        const void *storage, struct published_call *out);

/* The call whose batch completes, and the batch_op_bits of what the batch
 * did, when `done_arg` and `storage` are a batch's: false otherwise. On
 * every completion, so inline and without branches on the flags. */
static inline bool layout_read_batch(const struct libgrpc_layout *layout, const void *done_arg,
                                     const void *storage, grpc_call **call, unsigned *ops)
{
    const char *batch = (const char *)done_arg;
    if ((const char *)storage != batch + layout->off_batch_completion)
        return false;
    *call = *(grpc_call *const *)(batch + layout->off_batch_call);
    *ops = layout->batch_ops_of_flags[*(const uint8_t *)(batch + layout->off_batch_flags)];
    return *call != NULL;
}

/* The path of a client's registered call, from its handle. */
static inline grpc_slice layout_registered_path(const struct libgrpc_layout *layout,
                                                const void *handle)
{
    return *(const grpc_slice *)((const char *)handle + layout->off_registered_path);
}

enum layout_slot {
    LAYOUT_SLOT_FREE,        /* a FilterStackCall whose slot nothing uses */
    LAYOUT_SLOT_TAKEN,       /* something else in the process uses it */
    LAYOUT_NOT_A_CALL,       /* not a FilterStackCall of this build */
};

/* Whether the shim may keep its record in this call. */
enum layout_slot layout_call_slot(const struct libgrpc_layout *layout, const grpc_call *call);

/* Keeps `record` in a call whose slot is free: gRPC calls destroy(record)
 * when it destroys the call. Only before the call is published, while no
 * other thread can reach it. */
void layout_attach_record(const struct libgrpc_layout *layout, grpc_call *call, void *record,
                          void (*destroy)(void *));

/* The record the shim keeps in `call`, recognised by its destroy function,
 * or NULL (a call of another kind, or not followed). */
static inline void *layout_call_record(const struct libgrpc_layout *layout, const grpc_call *call,
                                       void (*destroy)(void *))
{
    const struct layout_context_slot *slot =
        (const struct layout_context_slot *)((const char *)call + layout->off_context_slot);
    if (*(const void *const *)call != layout->call_vtable || slot->destroy != destroy)
        return NULL;
    return slot->value;
}

/* An absl::Status is passed by reference; OK is the inlined code 0. */
static inline bool layout_status_ok(const void *status)
{
    return *(const uintptr_t *)status == 0;
}

#endif
