// Echo test server using the C++ synchronous API (Echo::Service).
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "serve.h"
#include "echo.grpc.pb.h"

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;
using grpcprom::test::Echo;
using grpcprom::test::EchoReply;
using grpcprom::test::EchoRequest;

// Sleeps `ms` in 5 ms steps; returns false as soon as the call is cancelled.
static bool SleepUnlessCancelled(ServerContext* ctx, int ms) {
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!ctx->IsCancelled()) {
    auto left = end - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return true;
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(5)));
  }
  return false;
}

// The handler's sleep: blind to cancellation when the request says so.
static bool Sleep(ServerContext* ctx, const EchoRequest& req) {
  if (!req.ignore_cancel()) return SleepUnlessCancelled(ctx, req.sleep_ms());
  std::this_thread::sleep_for(std::chrono::milliseconds(req.sleep_ms()));
  return true;
}

static Status CodeStatus(int code) {
  return code == 0 ? Status::OK : Status(static_cast<StatusCode>(code), "requested");
}

static const Status kCancelled(StatusCode::CANCELLED, "cancelled");

class EchoImpl final : public Echo::Service {
  Status Unary(ServerContext* ctx, const EchoRequest* req, EchoReply* rep) override {
    if (!Sleep(ctx, *req)) return kCancelled;
    rep->set_text(req->text());
    return CodeStatus(req->code());
  }

  Status ServerStream(ServerContext* ctx, const EchoRequest* req,
                      grpc::ServerWriter<EchoReply>* writer) override {
    if (!Sleep(ctx, *req)) return kCancelled;
    EchoReply rep;
    rep.set_text(req->text());
    for (int i = 0; i < req->responses(); i++) {
      if (req->last_with_status() && i == req->responses() - 1)
        writer->WriteLast(rep, grpc::WriteOptions());  // held back, sent with the status
      else if (!writer->Write(rep) && !req->ignore_cancel())
        return kCancelled;
    }
    return CodeStatus(req->code());
  }

  Status ClientStream(ServerContext* ctx, grpc::ServerReader<EchoRequest>* reader,
                      EchoReply* rep) override {
    EchoRequest req, last;
    while (reader->Read(&req)) last = req;
    if (!SleepUnlessCancelled(ctx, last.sleep_ms())) return kCancelled;
    rep->set_text(last.text());
    return CodeStatus(last.code());
  }

  Status Bidi(ServerContext* ctx,
              grpc::ServerReaderWriter<EchoReply, EchoRequest>* stream) override {
    EchoRequest req;
    while (stream->Read(&req)) {
      if (!SleepUnlessCancelled(ctx, req.sleep_ms())) return kCancelled;
      EchoReply rep;
      rep.set_text(req.text());
      for (int i = 0; i < req.responses(); i++) {
        if (req.last_with_status() && i == req.responses() - 1) {
          stream->WriteLast(rep, grpc::WriteOptions());
          return CodeStatus(req.code());
        }
        if (!stream->Write(rep)) return kCancelled;
      }
      if (req.code() != 0 || req.last_with_status()) return CodeStatus(req.code());
    }
    return Status::OK;
  }
};

int main(int argc, char** argv) {
  EchoImpl service;
  return serve_until_stopped(&service, argc, argv);
}
