/* cxx_services.h: the declared types of a C++ grpc::Service's methods, read
 * by libgrpcprom-cxx.so, which the shim loads only when a C++ service
 * registers (it needs libstdc++, which the shim itself must not). */
#ifndef GRPCPROM_CXX_SERVICES_H
#define GRPCPROM_CXX_SERVICES_H

#ifdef __cplusplus
extern "C" {
#endif

#define CXX_SERVICES_LIBRARY "libgrpcprom-cxx.so"
#define CXX_SERVICES_SYMBOL "cxx_service_methods"

/* client_streams | server_streams << 1, as in the region's type bits */
typedef void (*cxx_method_visitor)(const char *path, int streams, void *ctx);

typedef void (*cxx_service_methods_fn)(void *service, cxx_method_visitor visit, void *ctx);

__attribute__((visibility("default")))
void cxx_service_methods(void *service, cxx_method_visitor visit, void *ctx);

#ifdef __cplusplus
}
#endif

#endif
