/* layout.c: the table of libgrpc builds whose internals the shim can read. */
#include "layout.h"

#include <string.h>

#include "tracker.h"

static struct libgrpc_layout layouts[] = {
    {
        .core_version = "29.0.0",
        .done_request_symbol = "_ZN9grpc_core6Server16DoneRequestEventEPvP18grpc_cq_completion",
        .off_type = 8, .off_tag = 16, .off_call = 32, .off_storage = 40,
        .off_data = 88, .off_deadline = 96, .off_payload = 104,
        /* libgrpc29 is built without NDEBUG: a grpc_closure is 72 bytes. */
        .off_batch_call = 0, .off_batch_flags = 24, .off_batch_completion = 112,
        .flag_send_message = 1u << 2, .flag_send_status = 1u << 1,
        .flag_recv_message = 1u << 4, .flag_recv_close = 1u << 5,
        /* context_ at 0xa10, 16 bytes an element; GRPC_CONTEXT_TRAFFIC is 3 */
        .call_vtable_symbol = "_ZTVN9grpc_core15FilterStackCallE", .call_vtable_offset = 16,
        .off_context_slot = 0xa10 + 3 * 16,
        /* struct RegisteredCall { Slice path; ... } (surface/channel.h) */
        .off_registered_path = 0,
    },
};

const struct libgrpc_layout *layout_find(const char *version, void *(*find_symbol)(const char *))
{
    for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
        struct libgrpc_layout *l = &layouts[i];
        if (strcmp(version, l->core_version) != 0)
            continue;
        l->done_request_event = find_symbol(l->done_request_symbol);
        const char *vtable = find_symbol(l->call_vtable_symbol);
        if (l->done_request_event == NULL || vtable == NULL)
            continue;
        l->call_vtable = vtable + l->call_vtable_offset;
        for (unsigned flags = 0; flags < 256; flags++)
            l->batch_ops_of_flags[flags] = ((flags & l->flag_send_message) ? BATCH_SEND_MESSAGE : 0) |
                                           ((flags & l->flag_send_status) ? BATCH_SEND_STATUS : 0) |
                                           ((flags & l->flag_recv_message) ? BATCH_RECV_MESSAGE : 0) |
                                           ((flags & l->flag_recv_close) ? BATCH_RECV_CLOSE : 0);
        return l;
    }
    return NULL;
}

#define FIELD(type, base, offset) (*(type const *)((const char *)(base) + (offset)))

int layout_read_request(const struct libgrpc_layout *layout, const void *rc, const void *tag,
                        const void *storage, struct published_call *out)
{
    if ((const char *)storage != (const char *)rc + layout->off_storage ||
        FIELD(void *, rc, layout->off_tag) != tag)
        return -1;
    int type = FIELD(int, rc, layout->off_type);
    grpc_call **call = FIELD(grpc_call **, rc, layout->off_call);
    if ((type != 0 && type != 1) || call == NULL)
        return -1;
    memset(out, 0, sizeof(*out));
    out->call = *call;
    if (type == 1) {
        out->registered_method = FIELD(void *, rc, layout->off_data);
        out->deadline = FIELD(gpr_timespec *, rc, layout->off_deadline);
        out->payload = FIELD(grpc_byte_buffer **, rc, layout->off_payload);
        return out->registered_method ? 0 : -1;
    }
    out->details = FIELD(grpc_call_details *, rc, layout->off_data);
    if (out->details == NULL)
        return -1;
    out->deadline = &out->details->deadline;
    return 0;
}

enum layout_slot layout_call_slot(const struct libgrpc_layout *layout, const grpc_call *call)
{
    if (*(const void *const *)call != layout->call_vtable)
        return LAYOUT_NOT_A_CALL;
    const struct layout_context_slot *slot =
        (const struct layout_context_slot *)((const char *)call + layout->off_context_slot);
    return slot->value == NULL && slot->destroy == NULL ? LAYOUT_SLOT_FREE : LAYOUT_SLOT_TAKEN;
}

void layout_attach_record(const struct libgrpc_layout *layout, grpc_call *call, void *record,
                          void (*destroy)(void *))
{
    struct layout_context_slot *slot =
        (struct layout_context_slot *)((char *)call + layout->off_context_slot);
    slot->value = record;
    slot->destroy = destroy;
}
