/* layout.h: what the shim knows of one libgrpc build's internals: the two
 * internal functions it stands in for, and where a server's RequestedCall
 * keeps the call it publishes. Another build is one more table entry. */
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
 * did, when `done_arg` and `storage` are a batch's: false otherwise. */
bool layout_read_batch(const struct libgrpc_layout *layout, const void *done_arg,
                       const void *storage, grpc_call **call, unsigned *ops);

/* An absl::Status is passed by reference; OK is the inlined code 0. */
static inline bool layout_status_ok(const void *status)
{
    return *(const uintptr_t *)status == 0;
}

#endif
