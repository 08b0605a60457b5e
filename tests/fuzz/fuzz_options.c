/* fuzz_options.c: any text in any GRPCPROM_* variable is parsed without a
 * crash, and what is kept is always a usable setting. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

static const char *const names[] = {
    "GRPCPROM_DISABLE", "GRPCPROM_LOG", "GRPCPROM_LISTEN", "GRPCPROM_BUCKETS",
    "GRPCPROM_MAX_METHODS", "GRPCPROM_MAX_CALLS", "GRPCPROM_ALLOW",
    "GRPCPROM_BASIC_AUTH_FILE", "GRPCPROM_BEARER_TOKEN_FILE", "GRPCPROM_TLS_CERT",
    "GRPCPROM_TLS_KEY", "GRPCPROM_SHM", "GRPCPROM_PROTOSET",
};
static const char *fuzz_name;
static char *fuzz_value;

static const char *lookup(const char *name)
{
    return strcmp(name, fuzz_name) == 0 ? fuzz_value : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    fuzz_name = names[data[0] % (sizeof(names) / sizeof(names[0]))];
    fuzz_value = malloc(size);
    memcpy(fuzz_value, data + 1, size - 1);
    fuzz_value[size - 1] = '\0';
    struct options o;
    log_set_level(LOG_ERROR - 1); /* quiet: a bad value's line is expected */
    options_load(&o, lookup);
    if (o.bucket_count > GRPCPROM_MAX_BUCKETS || o.max_methods < 1 || o.max_calls < 1 ||
        o.allow.count > ACCESS_MAX_RULES || memchr(o.listen, '\0', sizeof(o.listen)) == NULL ||
        (o.shm[0] != '\0' && !region_name_ok(o.shm)))
        abort();
    for (unsigned i = 1; i < o.bucket_count; i++)
        if (!(o.buckets[i] > o.buckets[i - 1]))
            abort();
    free(fuzz_value);
    return 0;
}
