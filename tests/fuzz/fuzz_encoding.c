/* fuzz_encoding.c: any Accept-Encoding value (a client sends what it likes)
 * is read to its end, and leaves every weight within -1..1000. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "encoding.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *value = malloc(size + 1);
    memcpy(value, data, size);
    value[size] = '\0';
    struct codings c = CODINGS_NONE;
    encoding_fold(value, &c);
    encoding_fold(value, &c);
    if (c.gzip < -1 || c.gzip > 1000 || c.identity < -1 || c.identity > 1000 || c.any < -1 ||
        c.any > 1000)
        abort();
    (void)encoding_wants_gzip(&c);
    free(value);
    return 0;
}
