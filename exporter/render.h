/* render.h: renders a region as the Prometheus text format of go-grpc-prometheus server metrics. */
#ifndef GRPCPROM_RENDER_H
#define GRPCPROM_RENDER_H

#include <stddef.h>

#include "region.h"

/* A growable, malloc-based output buffer. Start from all zeros. data stays
 * NUL-terminated whenever it is not NULL (len excludes the NUL). Once an
 * allocation fails, failed is set and later appends do nothing. */
struct grpcprom_buf {
    char *data;
    size_t len, cap;
    int failed;
};

/* Frees the data and resets the buffer to all zeros. */
void grpcprom_buf_free(struct grpcprom_buf *b);

/* Appends printf-style text. */
void grpcprom_buf_printf(struct grpcprom_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends the whole page for region h, which the caller has already passed
 * through grpcprom_region_check. Returns 0, or -ENOMEM (then out->failed is
 * set and out->len is back where it was). Only reads the region. */
int grpcprom_render(const struct grpcprom_header *h, struct grpcprom_buf *out);

/* The shortest text that parses back to exactly v, as Go's
 * strconv.FormatFloat(v, 'g', -1, 64): "0.005", "10", "1e-05",
 * "1.23456789e+08"; "+Inf", "-Inf", "NaN"; both zeros print "0", as
 * client_golang writes them. */
void grpcprom_format_double(char out[32], double v);

#endif
