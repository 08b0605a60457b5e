/* fuzz_render.c: a region with arbitrary contents (a corrupt or foreign
 * one, as a reader of a crashed process's region may meet) is either
 * refused by the check or rendered as a page that is valid UTF-8 and ends
 * with a newline. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "region.h"
#include "render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct grpcprom_header plan = {0};
    size_t region_size = grpcprom_region_plan(&plan, 4, 3, 2);
    char *mem = aligned_alloc(64, region_size);
    memset(mem, 0, region_size);
    struct grpcprom_header *h = (struct grpcprom_header *)mem;
    memcpy(h, &plan, sizeof(plan));
    h->layout_version = GRPCPROM_LAYOUT_VERSION;
    h->bucket_bounds[0] = 0.1, h->bucket_bounds[1] = 1, h->bucket_bounds[2] = 10;
    memcpy(h->magic, GRPCPROM_MAGIC, sizeof(h->magic));
    /* The fuzz bytes go over the counters and the slots, then the header's
     * own fields when there are more. */
    size_t tail = region_size - offsetof(struct grpcprom_header, methods_used);
    size_t n = size < tail ? size : tail;
    memcpy(mem + offsetof(struct grpcprom_header, methods_used), data, n);
    if (size > n)
        memcpy(mem, data + n, size - n < sizeof(plan) ? size - n : sizeof(plan));
    if (grpcprom_region_check(h, region_size) == 0) {
        struct grpcprom_buf out = {0};
        if (grpcprom_render(h, &out) == 0 &&
            (out.len == 0 || out.data[out.len - 1] != '\n' || !grpcprom_label_text_ok(out.data, out.len)))
            abort();
        grpcprom_buf_free(&out);
    }
    free(mem);
    return 0;
}
