// serve.h: main() of the C++ test servers whose service needs no queue of
// its own (sync and callback): listen, announce, run until SIGINT/SIGTERM.
#ifndef ECHO_SERVERS_SERVE_H
#define ECHO_SERVERS_SERVE_H

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <memory>
#include <string>

#include "common.h"

inline int serve_until_stopped(grpc::Service* service, int argc, char** argv) {
  sigset_t stop;
  block_stop_signals(&stop);
  int port = 0, threads = 1;
  parse_args(argc, argv, &port, &threads);  // --threads is accepted and ignored

  grpc::EnableDefaultHealthCheckService(false);  // nothing but Echo: no health, no reflection
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                           grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    fprintf(stderr, "cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  announce_ready(bound);

  int sig = 0;
  sigwait(&stop, &sig);
  // Running calls get one second, then are cancelled (sync handlers see
  // IsCancelled; Shutdown returns once every callback reactor reached OnDone).
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}

#endif
