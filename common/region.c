/* region.c: facts about the region that writers and readers share. */
#include "region.h"

#include <errno.h>
#include <string.h>

const char *const grpcprom_code_names[GRPCPROM_CODES] = {
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
    "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
    "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
    "Internal", "Unavailable", "DataLoss", "Unauthenticated",
};

const char *grpcprom_type_label(uint32_t type_bits)
{
    switch (type_bits & (GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS)) {
    case GRPCPROM_CLIENT_STREAMS: return "client_stream";
    case GRPCPROM_SERVER_STREAMS: return "server_stream";
    case GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS: return "bidi_stream";
    default: return "unary";
    }
}

int grpcprom_region_check(const struct grpcprom_header *h, size_t size)
{
    if (size < sizeof(*h) || memcmp(h->magic, GRPCPROM_MAGIC, sizeof(h->magic)) != 0)
        return -EINVAL;
    if (h->layout_version != GRPCPROM_LAYOUT_VERSION || h->header_size != GRPCPROM_HEADER_SPAN ||
        h->method_size != sizeof(struct grpcprom_method) || h->bucket_count > GRPCPROM_MAX_BUCKETS)
        return -EINVAL;
    uint64_t need = (uint64_t)h->header_size + (uint64_t)h->method_capacity * h->method_size;
    if (h->method_capacity == 0 || h->region_size != need || need > size)
        return -EINVAL;
    for (uint32_t i = 1; i < h->bucket_count; i++)
        if (!(h->bucket_bounds[i] > h->bucket_bounds[i - 1]))
            return -EINVAL;
    return 0;
}
