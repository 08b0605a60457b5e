// Echo test server using the C++ async API (Echo::AsyncService, CallData state machines).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "common.h"
#include "echo.grpc.pb.h"

using grpc::ServerCompletionQueue;
using grpc::Status;
using grpc::StatusCode;
using grpcprom::test::Echo;
using grpcprom::test::EchoReply;
using grpcprom::test::EchoRequest;

static std::atomic<bool> g_stopping{false};
// Calls that have started and not yet been deleted; main waits for zero
// before shutting the completion queue down (no op may start after that).
static std::mutex g_live_mu;
static std::condition_variable g_live_cv;
static int g_live = 0;

static Status CodeStatus(int code) {
  return code == 0 ? Status::OK : Status(static_cast<StatusCode>(code), "requested");
}
static const Status kCancelled(StatusCode::CANCELLED, "cancelled");

class Call;
// Completion-queue tag: which call, and whether it is the done notification
// (which can be outstanding at the same time as the call's one op).
struct Tag {
  Call* call;
  bool done;
};

// Base of the per-method state machines. Step() is called for each
// completion of the call's single outstanding op (request, read, write,
// alarm, finish); the done notification only records cancellation.
class Call {
 public:
  Call(Echo::AsyncService* svc, ServerCompletionQueue* cq) : svc_(svc), cq_(cq) {
    ctx_.AsyncNotifyWhenDone(&done_tag_);
  }
  virtual ~Call() {}

  // Entry point from the polling threads.
  void OnEvent(bool done, bool ok) {
    std::unique_lock<std::mutex> lock(mu_);
    if (done) {
      done_ = true;
      cancelled_ = ctx_.IsCancelled();
      if (cancelled_ && !ignore_cancel_) alarm_.Cancel();  // wake a sleeping call at once
    } else if (!started_) {
      if (!ok) {  // server shutting down: the call never started
        lock.unlock();
        delete this;
        return;
      }
      started_ = true;
      {
        std::lock_guard<std::mutex> l(g_live_mu);
        g_live++;
      }
      if (!g_stopping) Clone();  // wait for the next call of this method
      Step(true);
    } else if (finishing_) {
      finished_ = true;
    } else {
      Step(ok);
    }
    bool last = done_ && finished_;
    lock.unlock();
    if (last) {
      delete this;
      std::lock_guard<std::mutex> l(g_live_mu);
      if (--g_live == 0) g_live_cv.notify_all();
    }
  }

 protected:
  virtual void Step(bool ok) = 0;
  virtual void Clone() = 0;

  // Arms the alarm; Step(ok) follows, ok=false if cancelled meanwhile.
  void Sleep(int ms) {
    if (cancelled_ && !ignore_cancel_) ms = 0;
    alarm_.Set(cq_, std::chrono::system_clock::now() + std::chrono::milliseconds(ms), &op_tag_);
  }
  // Tag for the final op: its completion ends the state machine.
  Tag* Finishing() {
    finishing_ = true;
    return &op_tag_;
  }

  Echo::AsyncService* svc_;
  ServerCompletionQueue* cq_;
  grpc::ServerContext ctx_;
  // True when the call must stop: its op failed or it was cancelled, and
  // the request did not ask to ignore that (ignore_cancel).
  bool Stopped(bool ok) const { return (!ok || cancelled_) && !ignore_cancel_; }

  Tag op_tag_{this, false};
  bool cancelled_ = false;
  bool ignore_cancel_ = false;  // set from the request before the first Sleep

 private:
  Tag done_tag_{this, true};
  grpc::Alarm alarm_;
  std::mutex mu_;
  bool started_ = false, finishing_ = false, finished_ = false, done_ = false;
};

class UnaryCall : public Call {
 public:
  UnaryCall(Echo::AsyncService* svc, ServerCompletionQueue* cq) : Call(svc, cq) {
    svc_->RequestUnary(&ctx_, &req_, &responder_, cq_, cq_, &op_tag_);
  }

 private:
  void Clone() override { new UnaryCall(svc_, cq_); }
  void Step(bool ok) override {
    if (!sleeping_) {  // request arrived
      sleeping_ = true;
      ignore_cancel_ = req_.ignore_cancel();
      Sleep(req_.sleep_ms());
    } else if (Stopped(ok)) {
      responder_.FinishWithError(kCancelled, Finishing());
    } else if (req_.code() != 0) {
      responder_.FinishWithError(CodeStatus(req_.code()), Finishing());
    } else {
      EchoReply rep;
      rep.set_text(req_.text());
      responder_.Finish(rep, Status::OK, Finishing());
    }
  }
  EchoRequest req_;
  grpc::ServerAsyncResponseWriter<EchoReply> responder_{&ctx_};
  bool sleeping_ = false;
};

class ServerStreamCall : public Call {
 public:
  ServerStreamCall(Echo::AsyncService* svc, ServerCompletionQueue* cq) : Call(svc, cq) {
    svc_->RequestServerStream(&ctx_, &req_, &writer_, cq_, cq_, &op_tag_);
  }

 private:
  void Clone() override { new ServerStreamCall(svc_, cq_); }
  // sent_ is -1 while waiting for the request, 0 while sleeping, then counts writes.
  void Step(bool ok) override {
    if (sent_ < 0) {
      sent_ = 0;
      ignore_cancel_ = req_.ignore_cancel();
      Sleep(req_.sleep_ms());
    } else if (Stopped(ok)) {
      writer_.Finish(kCancelled, Finishing());
    } else if (sent_ < req_.responses()) {
      sent_++;
      rep_.set_text(req_.text());
      if (req_.last_with_status() && sent_ == req_.responses())
        writer_.WriteAndFinish(rep_, grpc::WriteOptions(), CodeStatus(req_.code()), Finishing());
      else
        writer_.Write(rep_, &op_tag_);
    } else {
      writer_.Finish(CodeStatus(req_.code()), Finishing());
    }
  }
  EchoRequest req_;
  EchoReply rep_;
  grpc::ServerAsyncWriter<EchoReply> writer_{&ctx_};
  int sent_ = -1;
};

class ClientStreamCall : public Call {
 public:
  ClientStreamCall(Echo::AsyncService* svc, ServerCompletionQueue* cq) : Call(svc, cq) {
    svc_->RequestClientStream(&ctx_, &reader_, cq_, cq_, &op_tag_);
  }

 private:
  void Clone() override { new ClientStreamCall(svc_, cq_); }
  void Step(bool ok) override {
    switch (state_) {
      case kStart:
        state_ = kReading;
        reader_.Read(&req_, &op_tag_);
        break;
      case kReading:
        if (ok) {  // keep the last request, read on
          last_ = req_;
          reader_.Read(&req_, &op_tag_);
        } else {  // client half-closed (or the call died)
          state_ = kSleeping;
          Sleep(last_.sleep_ms());
        }
        break;
      case kSleeping:
        if (!ok || cancelled_) {
          reader_.FinishWithError(kCancelled, Finishing());
        } else if (last_.code() != 0) {
          reader_.FinishWithError(CodeStatus(last_.code()), Finishing());
        } else {
          EchoReply rep;
          rep.set_text(last_.text());
          reader_.Finish(rep, Status::OK, Finishing());
        }
        break;
    }
  }
  enum { kStart, kReading, kSleeping } state_ = kStart;
  EchoRequest req_, last_;
  grpc::ServerAsyncReader<EchoReply, EchoRequest> reader_{&ctx_};
};

class BidiCall : public Call {
 public:
  BidiCall(Echo::AsyncService* svc, ServerCompletionQueue* cq) : Call(svc, cq) {
    svc_->RequestBidi(&ctx_, &stream_, cq_, cq_, &op_tag_);
  }

 private:
  void Clone() override { new BidiCall(svc_, cq_); }
  void Step(bool ok) override {
    switch (state_) {
      case kStart:
        Read();
        break;
      case kReading:
        if (!ok) {  // end of client stream
          stream_.Finish(Status::OK, Finishing());
        } else {
          state_ = kSleeping;
          Sleep(req_.sleep_ms());
        }
        break;
      case kSleeping:
        if (!ok || cancelled_) {
          stream_.Finish(kCancelled, Finishing());
          break;
        }
        state_ = kWriting;
        sent_ = 0;
        [[fallthrough]];
      case kWriting:
        if (!ok || cancelled_) {
          stream_.Finish(kCancelled, Finishing());
        } else if (sent_ < req_.responses()) {
          sent_++;
          rep_.set_text(req_.text());
          if (req_.last_with_status() && sent_ == req_.responses())
            stream_.WriteAndFinish(rep_, grpc::WriteOptions(), CodeStatus(req_.code()),
                                   Finishing());
          else
            stream_.Write(rep_, &op_tag_);
        } else if (req_.code() != 0 || req_.last_with_status()) {
          stream_.Finish(CodeStatus(req_.code()), Finishing());
        } else {
          Read();
        }
        break;
    }
  }
  void Read() {
    state_ = kReading;
    stream_.Read(&req_, &op_tag_);
  }
  enum { kStart, kReading, kSleeping, kWriting } state_ = kStart;
  EchoRequest req_;
  EchoReply rep_;
  grpc::ServerAsyncReaderWriter<EchoReply, EchoRequest> stream_{&ctx_};
  int sent_ = 0;
};

// Body of each polling thread.
static void Poll(ServerCompletionQueue* cq) {
  void* tag;
  bool ok;
  while (cq->Next(&tag, &ok)) {
    Tag* t = static_cast<Tag*>(tag);
    t->call->OnEvent(t->done, ok);
  }
}

int main(int argc, char** argv) {
  sigset_t stop;
  block_stop_signals(&stop);
  int port = 0, threads = 2;
  parse_args(argc, argv, &port, &threads);  // --threads: polling threads (default 2)

  grpc::EnableDefaultHealthCheckService(false);  // nothing but Echo: no health, no reflection
  Echo::AsyncService service;
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port),
                           grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&service);
  std::unique_ptr<ServerCompletionQueue> cq = builder.AddCompletionQueue();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    fprintf(stderr, "cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }

  // One outstanding request per method; each call, once started, requests the next.
  new UnaryCall(&service, cq.get());
  new ServerStreamCall(&service, cq.get());
  new ClientStreamCall(&service, cq.get());
  new BidiCall(&service, cq.get());
  std::vector<std::thread> pollers;
  for (int i = 0; i < threads; i++) pollers.emplace_back(Poll, cq.get());
  announce_ready(bound);

  int sig = 0;
  sigwait(&stop, &sig);
  g_stopping = true;
  // Running calls get one second, then are cancelled.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  {
    std::unique_lock<std::mutex> l(g_live_mu);
    g_live_cv.wait(l, [] { return g_live == 0; });
  }
  cq->Shutdown();
  for (auto& t : pollers) t.join();  // they drain the queue before returning
  return 0;
}
