// Echo test server using the C++ callback API (Echo::CallbackService and reactors).
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include "serve.h"
#include "echo.grpc.pb.h"

using grpc::CallbackServerContext;
using grpc::Status;
using grpc::StatusCode;
using grpcprom::test::Echo;
using grpcprom::test::EchoReply;
using grpcprom::test::EchoRequest;

static Status CodeStatus(int code) {
  return code == 0 ? Status::OK : Status(static_cast<StatusCode>(code), "requested");
}
static const Status kCancelled(StatusCode::CANCELLED, "cancelled");

// Non-blocking sleep for a reactor: Sleep() runs `then(cancelled)` on a gRPC
// executor thread once `ms` have passed, or at once after Cancel(). Each sleep
// gets a fresh Alarm so that a callback still returning never races a new Set.
class Sleeper {
 public:
  void Sleep(int ms, std::function<void(bool)> then) {
    std::lock_guard<std::mutex> l(mu_);
    alarm_ = std::make_unique<grpc::Alarm>();
    alarm_->Set(std::chrono::system_clock::now() + std::chrono::milliseconds(ms),
                [this, then](bool fired) { then(!fired || cancelled_); });
    if (cancelled_) alarm_->Cancel();
  }
  void Cancel() {
    std::lock_guard<std::mutex> l(mu_);
    cancelled_ = true;
    if (alarm_) alarm_->Cancel();
  }
  bool cancelled() const { return cancelled_; }

 private:
  std::mutex mu_;
  std::unique_ptr<grpc::Alarm> alarm_;
  std::atomic<bool> cancelled_{false};
};

// Every reactor keeps exactly one operation (alarm, read or write) in flight
// and calls Finish exactly once, at the end of that chain; OnCancel only wakes
// a sleep, and failed reads/writes lead to Finish as well (unless the request
// says ignore_cancel: then the sleep runs its course and the writes go on).

class UnaryReactor : public grpc::ServerUnaryReactor {
 public:
  UnaryReactor(const EchoRequest* req, EchoReply* rep) : ignore_cancel_(req->ignore_cancel()) {
    rep->set_text(req->text());
    int code = req->code();
    sleeper_.Sleep(req->sleep_ms(), [this, code](bool cancelled) {
      Finish(cancelled ? kCancelled : CodeStatus(code));
    });
  }
  void OnCancel() override {
    if (!ignore_cancel_) sleeper_.Cancel();
  }
  void OnDone() override { delete this; }

 private:
  const bool ignore_cancel_;
  Sleeper sleeper_;
};

class ServerStreamReactor : public grpc::ServerWriteReactor<EchoReply> {
 public:
  explicit ServerStreamReactor(const EchoRequest* req) : req_(*req) {
    rep_.set_text(req_.text());
    sleeper_.Sleep(req_.sleep_ms(), [this](bool cancelled) {
      if (cancelled)
        Finish(kCancelled);
      else
        NextWrite();
    });
  }
  void OnWriteDone(bool ok) override {
    if (!ok && !req_.ignore_cancel())
      Finish(kCancelled);
    else
      NextWrite();
  }
  void OnCancel() override {
    if (!req_.ignore_cancel()) sleeper_.Cancel();
  }
  void OnDone() override { delete this; }

 private:
  void NextWrite() {
    if (sent_++ < req_.responses()) {
      if (req_.last_with_status() && sent_ == req_.responses())
        StartWriteAndFinish(&rep_, grpc::WriteOptions(), CodeStatus(req_.code()));
      else
        StartWrite(&rep_);
    } else {
      Finish(CodeStatus(req_.code()));
    }
  }
  EchoRequest req_;
  EchoReply rep_;
  int sent_ = 0;
  Sleeper sleeper_;
};

class ClientStreamReactor : public grpc::ServerReadReactor<EchoRequest> {
 public:
  explicit ClientStreamReactor(EchoReply* rep) : rep_(rep) { StartRead(&req_); }
  void OnReadDone(bool ok) override {
    if (ok) {
      last_ = req_;
      StartRead(&req_);
      return;
    }
    // Client half-closed (or the call died): answer from the last request.
    sleeper_.Sleep(last_.sleep_ms(), [this](bool cancelled) {
      if (cancelled) {
        Finish(kCancelled);
      } else {
        rep_->set_text(last_.text());
        Finish(CodeStatus(last_.code()));
      }
    });
  }
  void OnCancel() override { sleeper_.Cancel(); }
  void OnDone() override { delete this; }

 private:
  EchoReply* rep_;
  EchoRequest req_, last_;
  Sleeper sleeper_;
};

class BidiReactor : public grpc::ServerBidiReactor<EchoRequest, EchoReply> {
 public:
  BidiReactor() { StartRead(&req_); }
  void OnReadDone(bool ok) override {
    if (!ok) {  // end of client stream
      Finish(Status::OK);
      return;
    }
    sent_ = 0;
    rep_.set_text(req_.text());
    sleeper_.Sleep(req_.sleep_ms(), [this](bool cancelled) {
      if (cancelled)
        Finish(kCancelled);
      else
        NextWrite();
    });
  }
  void OnWriteDone(bool ok) override {
    if (!ok)
      Finish(kCancelled);
    else
      NextWrite();
  }
  void OnCancel() override { sleeper_.Cancel(); }
  void OnDone() override { delete this; }

 private:
  // Sends the next reply of the current request, then ends or reads on.
  void NextWrite() {
    if (sent_++ < req_.responses()) {
      if (req_.last_with_status() && sent_ == req_.responses())
        StartWriteAndFinish(&rep_, grpc::WriteOptions(), CodeStatus(req_.code()));
      else
        StartWrite(&rep_);
    } else if (req_.code() != 0 || req_.last_with_status()) {
      Finish(CodeStatus(req_.code()));
    } else {
      StartRead(&req_);
    }
  }
  EchoRequest req_;
  EchoReply rep_;
  int sent_ = 0;
  Sleeper sleeper_;
};

class EchoImpl final : public Echo::CallbackService {
  grpc::ServerUnaryReactor* Unary(CallbackServerContext*, const EchoRequest* req,
                                  EchoReply* rep) override {
    return new UnaryReactor(req, rep);
  }
  grpc::ServerWriteReactor<EchoReply>* ServerStream(CallbackServerContext*,
                                                    const EchoRequest* req) override {
    return new ServerStreamReactor(req);
  }
  grpc::ServerReadReactor<EchoRequest>* ClientStream(CallbackServerContext*,
                                                     EchoReply* rep) override {
    return new ClientStreamReactor(rep);
  }
  grpc::ServerBidiReactor<EchoRequest, EchoReply>* Bidi(CallbackServerContext*) override {
    return new BidiReactor();
  }
};

int main(int argc, char** argv) {
  EchoImpl service;
  return serve_until_stopped(&service, argc, argv);
}
