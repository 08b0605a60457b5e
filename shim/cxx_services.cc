// cxx_services.cc: libgrpcprom-cxx.so, loaded by the shim when the first C++
// service registers. Reads the declared type of every method of a C++
// service, which libgrpc++ never passes to the C core (unary and server
// streaming register alike). Compiled against the installed grpc++ headers,
// so the layout it reads is the one of the library it runs with.
#include <grpcpp/impl/service_type.h>

#include "cxx_services.h"

namespace {

// grpc::Service keeps its methods private; naming a private member in an
// explicit instantiation is allowed, and this template passes it out.
struct ServiceMethodsTag {
    using type = std::vector<std::unique_ptr<grpc::internal::RpcServiceMethod>> grpc::Service::*;
    friend type member(ServiceMethodsTag);
};

template <typename Tag, typename Tag::type Member>
struct Expose {
    friend typename Tag::type member(Tag) { return Member; }
};

template struct Expose<ServiceMethodsTag, &grpc::Service::methods_>;

}  // namespace

extern "C" void cxx_service_methods(void *service, cxx_method_visitor visit, void *ctx)
{
    auto *svc = static_cast<grpc::Service *>(service);
    for (const auto &method : svc->*member(ServiceMethodsTag())) {
        if (!method)
            continue;  // a method marked generic has no entry
        switch (method->method_type()) {
        case grpc::internal::RpcMethod::NORMAL_RPC: visit(method->name(), 0, ctx); break;
        case grpc::internal::RpcMethod::CLIENT_STREAMING: visit(method->name(), 1, ctx); break;
        case grpc::internal::RpcMethod::SERVER_STREAMING: visit(method->name(), 2, ctx); break;
        case grpc::internal::RpcMethod::BIDI_STREAMING: visit(method->name(), 3, ctx); break;
        }
    }
}
