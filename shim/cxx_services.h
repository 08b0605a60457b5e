/* cxx_services.h: the declared types of a C++ grpc::Service's methods. */
#ifndef GRPCPROM_CXX_SERVICES_H
#define GRPCPROM_CXX_SERVICES_H

#ifdef __cplusplus
extern "C" {
#endif

/* client_streams | server_streams << 1, as in the region's type bits */
typedef void (*cxx_method_visitor)(const char *path, int streams, void *ctx);

void cxx_service_methods(void *service, cxx_method_visitor visit, void *ctx);

#ifdef __cplusplus
}
#endif

#endif
