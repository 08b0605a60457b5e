/* protoset.h: the methods of a protobuf descriptor set (protoc
 * --include_imports --descriptor_set_out), read by libgrpcprom-protoset.so,
 * which the shim loads only when GRPCPROM_PROTOSET names a file (it needs
 * libprotobuf-c, which the shim itself must not). */
#ifndef GRPCPROM_PROTOSET_H
#define GRPCPROM_PROTOSET_H

#include <stddef.h>

#define PROTOSET_LIBRARY "libgrpcprom-protoset.so"
#define PROTOSET_SYMBOL "protoset_methods"
#define PROTOSET_MAX_BYTES (64 << 20) /* a larger file is refused, not read */

/* path is "/package.Service/Method"; streams is client_streams |
 * server_streams << 1, as in the region's type bits. */
typedef void (*protoset_method_visitor)(const char *path, int streams, void *ctx);

/* Calls `visit` for every method of every service in the descriptor set in
 * file `file`. 0, or -1 with a line in why[why_size] saying what is wrong
 * (then nothing was visited). */
typedef int (*protoset_methods_fn)(const char *file, protoset_method_visitor visit, void *ctx,
                                   char *why, size_t why_size);

__attribute__((visibility("default")))
int protoset_methods(const char *file, protoset_method_visitor visit, void *ctx, char *why,
                     size_t why_size);

#endif
