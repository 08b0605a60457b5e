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

const char *const grpcprom_overflow_reason_names[GRPCPROM_OVERFLOW_REASONS] = {
    "invalid_path", "path_too_long", "method_table_full", "unanswered_path",
    "client_method_table_full",
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

static uint64_t power_of_two_at_least(uint64_t n)
{
    uint64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static uint64_t round_up_64(uint64_t n)
{
    return (n + 63) / 64 * 64;
}

size_t grpcprom_region_plan(struct grpcprom_header *h, uint32_t method_capacity,
                            uint32_t bucket_count, uint32_t shard_count)
{
    uint64_t slots = (uint64_t)method_capacity + GRPCPROM_OVERFLOW_SLOTS;
    h->header_size = sizeof(struct grpcprom_header);
    h->method_size = sizeof(struct grpcprom_method);
    h->method_capacity = method_capacity;
    h->bucket_count = bucket_count;
    h->shard_count = shard_count;
    h->counts_size = (uint32_t)round_up_64(offsetof(struct grpcprom_counts, buckets) +
                                           GRPCPROM_HISTOGRAMS * ((uint64_t)bucket_count + 1) *
                                               sizeof(uint64_t));
    h->index_capacity = (uint32_t)power_of_two_at_least(2 * (uint64_t)method_capacity);
    h->index_offset = h->header_size;
    h->methods_offset = round_up_64(h->index_offset + (uint64_t)h->index_capacity * sizeof(uint32_t));
    h->counts_offset = h->methods_offset + slots * h->method_size;
    h->region_size = h->counts_offset + slots * shard_count * h->counts_size;
    return (size_t)h->region_size;
}

void grpcprom_region_sum(const struct grpcprom_header *h, const struct grpcprom_method *m,
                         struct grpcprom_totals *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t shard = 0; shard < h->shard_count; shard++) {
        const struct grpcprom_counts *c = grpcprom_region_counts(h, m, shard);
        out->started += atomic_load_explicit(&c->started, memory_order_relaxed);
        out->msg_received += atomic_load_explicit(&c->msg_received, memory_order_relaxed);
        out->msg_sent += atomic_load_explicit(&c->msg_sent, memory_order_relaxed);
        for (int code = 0; code < GRPCPROM_CODES; code++)
            out->handled[code] += atomic_load_explicit(&c->handled[code], memory_order_relaxed);
        out->latency_sum_us += atomic_load_explicit(&c->latency_sum_us, memory_order_relaxed);
        for (int i = 0; i < 2; i++)
            out->msg_sum_us[i] += atomic_load_explicit(&c->msg_sum_us[i], memory_order_relaxed);
        for (size_t b = 0; b < GRPCPROM_HISTOGRAM_START(h, GRPCPROM_HISTOGRAMS); b++)
            out->buckets[b] += atomic_load_explicit(&c->buckets[b], memory_order_relaxed);
    }
}

/* Follows RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF. */
int grpcprom_label_text_ok(const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text, *end = s + n;
    while (s < end) {
        unsigned c = *s++;
        if (c == 0)
            return 0;
        if (c < 0x80)
            continue;
        int more;
        unsigned min;
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
            min = 0x80;
            c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            min = 0x800;
            c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            return 0;
        }
        if (end - s < more)
            return 0;
        for (int i = 0; i < more; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return 0;
            c = c << 6 | (s[i] & 0x3f);
        }
        s += more;
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
    }
    return 1;
}

int grpcprom_region_check(const struct grpcprom_header *h, size_t size)
{
    if (size < sizeof(*h) || memcmp(h->magic, GRPCPROM_MAGIC, sizeof(h->magic)) != 0)
        return -EINVAL;
    if (h->layout_version != GRPCPROM_LAYOUT_VERSION || h->bucket_count > GRPCPROM_MAX_BUCKETS ||
        h->method_capacity == 0 || h->method_capacity > GRPCPROM_MAX_METHOD_CAPACITY ||
        h->shard_count == 0 || h->shard_count > GRPCPROM_MAX_SHARDS ||
        (h->shard_count & (h->shard_count - 1)) != 0)
        return -EINVAL;
    struct grpcprom_header plan;
    grpcprom_region_plan(&plan, h->method_capacity, h->bucket_count, h->shard_count);
    if (h->header_size != plan.header_size || h->method_size != plan.method_size ||
        h->index_capacity != plan.index_capacity || h->index_offset != plan.index_offset ||
        h->methods_offset != plan.methods_offset || h->counts_offset != plan.counts_offset ||
        h->counts_size != plan.counts_size || h->region_size != plan.region_size ||
        h->region_size > size)
        return -EINVAL;
    for (uint32_t i = 0; i < h->bucket_count; i++)
        if (!(h->bucket_bounds[i] > (i ? h->bucket_bounds[i - 1] : 0)) ||
            !(h->bucket_bounds[i] <= GRPCPROM_MAX_BUCKET_BOUND))
            return -EINVAL;
    return 0;
}
