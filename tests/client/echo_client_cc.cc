// Test client in C++: holds thousands of calls open, calls arbitrary paths, runs a small mix or the
// client scenario (with the blocking, async or callback API); prints what it saw as JSON. With
// --serve it also serves (no service), to be a process that is both server and client.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "echo.grpc.pb.h"

using grpcprom::test::Echo;
using grpcprom::test::EchoReply;
using grpcprom::test::EchoRequest;

static const char* const kCodeNames[] = {
    "OK",           "Canceled",        "Unknown",         "InvalidArgument",    "DeadlineExceeded",
    "NotFound",     "AlreadyExists",   "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted",      "OutOfRange",      "Unimplemented",   "Internal",           "Unavailable",
    "DataLoss",     "Unauthenticated"};

static std::string CodeName(const grpc::Status& s) {
  int c = s.error_code();
  return c >= 0 && c < 17 ? kCodeNames[c] : "Unknown";
}

static std::string CodesJson(const std::map<std::string, int>& codes) {
  std::string out = "{";
  for (const auto& kv : codes)
    out += (out.size() > 1 ? ", \"" : "\"") + kv.first + "\": " + std::to_string(kv.second);
  return out + "}";
}

// A channel of its own: distinct channel args keep gRPC from sharing one
// connection between channels.
static std::shared_ptr<grpc::Channel> NewChannel(const std::string& target, int id) {
  grpc::ChannelArguments args;
  args.SetInt("grpcprom.channel_id", id);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

static std::chrono::system_clock::time_point In(int ms) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
}

// ---- --hold N: N Bidi calls open at once on one completion queue.

struct Held {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<EchoRequest, EchoReply>> rw;
  EchoRequest req;
  EchoReply rep;
  grpc::Status status;
};
enum HoldOp { kStarted, kWritten, kRead, kWritesDone, kReadEnd, kFinished };

static void* HoldTag(Held* h, HoldOp op) {
  return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(h) | op);
}

// Each call: start, write one request, read its echo (it is then held);
// after the line on stdin: half-close, read to the end, finish. A call
// that fails on the way goes straight to Finish.
static int Hold(const std::string& target, int n, int channels) {
  std::vector<std::shared_ptr<grpc::Channel>> chans;
  std::vector<std::unique_ptr<Echo::Stub>> stubs;
  for (int i = 0; i < channels; i++) {
    chans.push_back(NewChannel(target, i));
    stubs.push_back(Echo::NewStub(chans.back()));
  }
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Held>> calls;
  for (int i = 0; i < n; i++) {
    calls.emplace_back(new Held);
    Held* h = calls.back().get();
    h->req.set_responses(1);
    h->req.set_text("held");
    h->rw = stubs[i % channels]->PrepareAsyncBidi(&h->ctx, &cq);
    h->rw->StartCall(HoldTag(h, kStarted));
  }
  int held = 0, finished = 0, sent = 0, received = 0;
  std::map<std::string, int> codes;
  bool released = false;
  while (finished < n) {
    if (!released && held + finished == n) {
      printf("HELD %d\n", held);
      fflush(stdout);
      std::string line;
      std::getline(std::cin, line);
      released = true;
      for (auto& c : calls)  // the calls still open are the held ones
        if (c->rw) c->rw->WritesDone(HoldTag(c.get(), kWritesDone));
    }
    void* tag;
    bool ok;
    if (!cq.Next(&tag, &ok)) break;
    Held* h = reinterpret_cast<Held*>(reinterpret_cast<uintptr_t>(tag) & ~uintptr_t{7});
    HoldOp op = static_cast<HoldOp>(reinterpret_cast<uintptr_t>(tag) & 7);
    if (op == kFinished) {
      codes[CodeName(h->status)]++;
      finished++;
      h->rw.reset();
      continue;
    }
    if (ok && op == kStarted) {
      h->rw->Write(h->req, HoldTag(h, kWritten));
    } else if (ok && op == kWritten) {
      sent++;
      h->rw->Read(&h->rep, HoldTag(h, kRead));
    } else if (ok && op == kRead) {
      received++;
      held++;
    } else if (ok && (op == kWritesDone || op == kReadEnd)) {
      if (op == kReadEnd) received++;  // more than the echo: not expected
      h->rw->Read(&h->rep, HoldTag(h, kReadEnd));
    } else {
      h->rw->Finish(&h->status, HoldTag(h, kFinished));
    }
  }
  printf("{\"started\": %d, \"codes\": %s, \"sent\": %d, \"received\": %d}\n", n,
         CodesJson(codes).c_str(), sent, received);
  return 0;
}

// ---- --path HEX: generic unary calls to any path.

static std::string FromHex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

static int CallPath(const std::string& target, const std::string& path, int count,
                    const std::string& request, int deadline_ms) {
  auto channel = NewChannel(target, 0);
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  std::map<std::string, int> codes;
  int received = 0;
  for (int i = 0; i < count; i++) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(deadline_ms));
    grpc::Slice slice(request);
    grpc::ByteBuffer req(&slice, 1), rep;
    grpc::Status status;
    auto call = stub.PrepareUnaryCall(&ctx, path, req, &cq);
    call->StartCall();
    call->Finish(&rep, &status, &ctx);
    void* tag;
    bool ok;
    cq.Next(&tag, &ok);
    codes[CodeName(status)]++;
    if (status.ok()) received++;
  }
  printf("{\"count\": %d, \"codes\": %s, \"received\": %d}\n", count, CodesJson(codes).c_str(),
         received);
  return 0;
}

// ---- --mix: a small fixed mix with the blocking stub.

struct Seen {
  int started = 0, msg_received = 0, msg_sent = 0;
  std::map<std::string, int> handled;
};
// Keyed like echo_client.py's to_json: "type|service|method".
static std::map<std::string, Seen> g_mix;

// Notes one call: its code, the messages the server got, the replies we got.
static void Note(const char* type, const char* method, const grpc::Status& s, int got, int sent) {
  Seen& m = g_mix[std::string(type) + "|grpcprom.test.Echo|" + method];
  m.started++;
  m.handled[CodeName(s)]++;
  m.msg_received += got;
  m.msg_sent += sent;
}

static EchoRequest R(int code, int sleep_ms, int responses) {
  EchoRequest r;
  r.set_code(code);
  r.set_sleep_ms(sleep_ms);
  r.set_responses(responses);
  r.set_text("x");
  return r;
}

static void Unary(Echo::Stub* stub, const EchoRequest& req, int deadline_ms, int cancel_ms) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(deadline_ms));
  std::thread canceller;
  if (cancel_ms >= 0)
    canceller = std::thread([&ctx, cancel_ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(cancel_ms));
      ctx.TryCancel();
    });
  EchoReply rep;
  grpc::Status s = stub->Unary(&ctx, req, &rep);
  if (canceller.joinable()) canceller.join();
  Note("unary", "Unary", s, 1, s.ok() ? 1 : 0);
}

static int Mix(const std::string& target) {
  auto channel = NewChannel(target, 0);
  auto stub = Echo::NewStub(channel);
  Unary(stub.get(), R(0, 0, 0), 10000, -1);
  Unary(stub.get(), R(5, 0, 0), 10000, -1);
  Unary(stub.get(), R(0, 0, 0), -1000, -1);    // deadline already past
  Unary(stub.get(), R(0, 2000, 0), 10000, 100);  // cancelled while the server sleeps
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10000));
    auto reader = stub->ServerStream(&ctx, R(0, 0, 3));
    EchoReply rep;
    int got = 0;
    while (reader->Read(&rep)) got++;
    Note("server_stream", "ServerStream", reader->Finish(), 1, got);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10000));
    EchoReply rep;
    auto writer = stub->ClientStream(&ctx, &rep);
    int sent = 0;
    for (int i = 0; i < 3; i++) sent += writer->Write(R(0, 0, 0)) ? 1 : 0;
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    Note("client_stream", "ClientStream", s, sent, s.ok() ? 1 : 0);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10000));
    auto stream = stub->Bidi(&ctx);
    EchoReply rep;
    int sent = 0, got = 0;
    for (int responses : {1, 2}) {
      if (!stream->Write(R(0, 0, responses))) break;
      sent++;
      for (int i = 0; i < responses && stream->Read(&rep); i++) got++;
    }
    stream->WritesDone();
    while (stream->Read(&rep)) got++;
    Note("bidi_stream", "Bidi", stream->Finish(), sent, got);
  }
  printf("{");
  const char* sep = "";
  for (const auto& kv : g_mix) {
    printf("%s\"%s\": {\"handled\": %s, \"msg_received\": %d, \"msg_sent\": %d, \"started\": %d}",
           sep, kv.first.c_str(), CodesJson(kv.second.handled).c_str(), kv.second.msg_received,
           kv.second.msg_sent, kv.second.started);
    sep = ", ";
  }
  printf("}\n");
  return 0;
}

// ---- --scenario: the client scenario (as tests/go_reference/client/main.go), with the
// blocking, async or callback API. The loops that drive a stream are written once, over the
// blocking API's Read/Write/WritesDone/Finish; the async and callback calls are wrapped to
// offer the same, each operation waited for, so every API reads and writes as Go does.

// [step, code] in the order the steps ran.
static std::vector<std::pair<std::string, std::string>> g_steps;

// Notes the code a step ended with.
static void Step(const char* step, const grpc::Status& s) { g_steps.emplace_back(step, CodeName(s)); }

// A Bidi call's plan: each (request, replies to read) in turn; then half-close if
// writes_done, or cancel after `cancel_at` steps.
struct BidiPlan {
  bool writes_done;
  int cancel_at;
  std::vector<std::pair<EchoRequest, int>> steps;
};

// Reads until a read fails, then finishes (Go's Recv loop).
template <class S>
static grpc::Status ReadToEnd(S* s) {
  EchoReply rep;
  while (s->Read(&rep)) {
  }
  return s->Finish();
}

// The requests (up to the first failed write), then close and finish (Go's CloseAndRecv).
template <class S>
static grpc::Status WriteAll(S* s, const std::vector<EchoRequest>& reqs) {
  for (const auto& r : reqs)
    if (!s->Write(r)) break;
  s->WritesDone();
  return s->Finish();
}

// As Go's bidi loop: a failed write leaves the end to reads, a failed read is
// the end (no read after it); then read to the end and finish.
template <class S>
static grpc::Status DriveBidi(S* s, grpc::ClientContext* ctx, const BidiPlan& plan) {
  EchoReply rep;
  bool open = true, read_end = false;
  for (size_t i = 0; i < plan.steps.size() && open; i++) {
    open = s->Write(plan.steps[i].first);
    for (int n = 0; n < plan.steps[i].second && open; n++) read_end = !(open = s->Read(&rep));
    if (plan.cancel_at == static_cast<int>(i) + 1) ctx->TryCancel();
  }
  if (open && plan.writes_done) s->WritesDone();
  while (!read_end && s->Read(&rep)) {
  }
  return s->Finish();
}

// The four kinds of call, made with one API on a context set up by the step.
struct Api {
  grpc::Status (*unary)(Echo::Stub*, grpc::ClientContext*, const EchoRequest&);
  grpc::Status (*server_stream)(Echo::Stub*, grpc::ClientContext*, const EchoRequest&);
  grpc::Status (*client_stream)(Echo::Stub*, grpc::ClientContext*, const std::vector<EchoRequest>&);
  grpc::Status (*bidi)(Echo::Stub*, grpc::ClientContext*, const BidiPlan&);
};

// Blocking API: its streams already have the interface the loops use.

// A Unary call with the blocking stub.
static grpc::Status SyncUnary(Echo::Stub* stub, grpc::ClientContext* ctx, const EchoRequest& req) {
  EchoReply rep;
  return stub->Unary(ctx, req, &rep);
}

// A ServerStream call with a ClientReader.
static grpc::Status SyncServerStream(Echo::Stub* stub, grpc::ClientContext* ctx,
                                     const EchoRequest& req) {
  return ReadToEnd(stub->ServerStream(ctx, req).get());
}

// A ClientStream call with a ClientWriter.
static grpc::Status SyncClientStream(Echo::Stub* stub, grpc::ClientContext* ctx,
                                     const std::vector<EchoRequest>& reqs) {
  EchoReply rep;
  return WriteAll(stub->ClientStream(ctx, &rep).get(), reqs);
}

// A Bidi call with a ClientReaderWriter.
static grpc::Status SyncBidi(Echo::Stub* stub, grpc::ClientContext* ctx, const BidiPlan& plan) {
  return DriveBidi(stub->Bidi(ctx).get(), ctx, plan);
}

// Async API: a call's own completion queue with one operation in flight at a
// time, so that Wait's event is that operation's; drained on destruction, as
// gRPC requires before a queue goes.
struct Queue {
  grpc::CompletionQueue cq;
  bool Wait() {
    void* tag;
    bool ok = false;
    cq.Next(&tag, &ok);
    return ok;
  }
  ~Queue() {
    cq.Shutdown();
    void* tag;
    bool ok;
    while (cq.Next(&tag, &ok)) {
    }
  }
};

// An async stream (ClientAsyncReader, Writer or ReaderWriter) with the blocking
// interface, each operation waited for: the loops then drive it as they drive
// the blocking stub. Start waits for the start as the blocking stub's
// constructor does.
template <class S>
struct AsyncStream : Queue {
  std::unique_ptr<S> s;
  void Start(std::unique_ptr<S> stream) {
    s = std::move(stream);
    s->StartCall(this);
    Wait();
  }
  bool Read(EchoReply* rep) {
    s->Read(rep, this);
    return Wait();
  }
  bool Write(const EchoRequest& r) {
    s->Write(r, this);
    return Wait();
  }
  bool WritesDone() {
    s->WritesDone(this);
    return Wait();
  }
  grpc::Status Finish() {
    grpc::Status st;
    s->Finish(&st, this);
    Wait();
    return st;
  }
};

// A Unary call with AsyncUnary, its Finish waited for on the call's queue.
static grpc::Status AsyncUnary(Echo::Stub* stub, grpc::ClientContext* ctx, const EchoRequest& req) {
  Queue q;
  EchoReply rep;
  grpc::Status st;
  stub->AsyncUnary(ctx, req, &q.cq)->Finish(&rep, &st, &q);
  q.Wait();
  return st;
}

// A ServerStream call with a ClientAsyncReader.
static grpc::Status AsyncServerStream(Echo::Stub* stub, grpc::ClientContext* ctx,
                                      const EchoRequest& req) {
  AsyncStream<grpc::ClientAsyncReader<EchoReply>> s;
  s.Start(stub->PrepareAsyncServerStream(ctx, req, &s.cq));
  return ReadToEnd(&s);
}

// A ClientStream call with a ClientAsyncWriter.
static grpc::Status AsyncClientStream(Echo::Stub* stub, grpc::ClientContext* ctx,
                                      const std::vector<EchoRequest>& reqs) {
  EchoReply rep;
  AsyncStream<grpc::ClientAsyncWriter<EchoRequest>> s;
  s.Start(stub->PrepareAsyncClientStream(ctx, &rep, &s.cq));
  return WriteAll(&s, reqs);
}

// A Bidi call with a ClientAsyncReaderWriter.
static grpc::Status AsyncBidi(Echo::Stub* stub, grpc::ClientContext* ctx, const BidiPlan& plan) {
  AsyncStream<grpc::ClientAsyncReaderWriter<EchoRequest, EchoReply>> s;
  s.Start(stub->PrepareAsyncBidi(ctx, &s.cq));
  return DriveBidi(&s, ctx, plan);
}

// Callback API: reactions come on gRPC's threads; a Waiter hands each one's ok,
// and the call's end (OnDone), to the thread waiting for it.
struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<bool> oks;
  bool done = false;
  grpc::Status status;
  void Post(bool ok) {
    std::lock_guard<std::mutex> lock(mu);
    oks.push_back(ok);
    cv.notify_all();
  }
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [this] { return !oks.empty(); });
    bool ok = oks.front();
    oks.pop_front();
    return ok;
  }
  // Notifies under the lock, so the waiter (which then destroys this) cannot
  // go on before Done is through with it.
  void Done(const grpc::Status& s) {
    std::lock_guard<std::mutex> lock(mu);
    status = s;
    done = true;
    cv.notify_all();
  }
  grpc::Status WaitDone() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [this] { return done; });
    return status;
  }
};

// The callback streams with the blocking interface, each operation waited for.
// A stream asks for its status at StartCall and ends (OnDone) once that and
// every operation are done: Begin takes a hold so it cannot end before the loop
// is through with it, and Finish lets go of the hold and waits for OnDone.
template <class Base>
struct Reactor : Base, Waiter {
  void OnDone(const grpc::Status& s) override { Done(s); }
  void Begin() {
    this->AddHold();
    this->StartCall();
  }
  grpc::Status Finish() {
    this->RemoveHold();
    return WaitDone();
  }
};
// What a reactor that reads adds: each read waited for.
template <class Base>
struct Reading : Base {
  void OnReadDone(bool ok) override { this->Post(ok); }
  bool Read(EchoReply* rep) {
    this->StartRead(rep);
    return this->Wait();
  }
};
// What a reactor that writes adds: each write, and the close, waited for.
template <class Base>
struct Writing : Base {
  void OnWriteDone(bool ok) override { this->Post(ok); }
  void OnWritesDoneDone(bool ok) override { this->Post(ok); }
  bool Write(const EchoRequest& r) {
    this->StartWrite(&r);
    return this->Wait();
  }
  bool WritesDone() {
    this->StartWritesDone();
    return this->Wait();
  }
};
using ReadReactor = Reading<Reactor<grpc::ClientReadReactor<EchoReply>>>;
using WriteReactor = Writing<Reactor<grpc::ClientWriteReactor<EchoRequest>>>;
using BidiReactor = Reading<Writing<Reactor<grpc::ClientBidiReactor<EchoRequest, EchoReply>>>>;

// A Unary call with stub->async(), its callback waited for.
static grpc::Status CbUnary(Echo::Stub* stub, grpc::ClientContext* ctx, const EchoRequest& req) {
  Waiter w;
  EchoReply rep;
  stub->async()->Unary(ctx, &req, &rep, [&w](grpc::Status s) { w.Done(s); });
  return w.WaitDone();
}

// A ServerStream call with a ClientReadReactor.
static grpc::Status CbServerStream(Echo::Stub* stub, grpc::ClientContext* ctx,
                                   const EchoRequest& req) {
  ReadReactor r;
  stub->async()->ServerStream(ctx, &req, &r);
  r.Begin();
  return ReadToEnd(&r);
}

// A ClientStream call with a ClientWriteReactor.
static grpc::Status CbClientStream(Echo::Stub* stub, grpc::ClientContext* ctx,
                                   const std::vector<EchoRequest>& reqs) {
  EchoReply rep;
  WriteReactor w;
  stub->async()->ClientStream(ctx, &rep, &w);
  w.Begin();
  return WriteAll(&w, reqs);
}

// A Bidi call with a ClientBidiReactor.
static grpc::Status CbBidi(Echo::Stub* stub, grpc::ClientContext* ctx, const BidiPlan& plan) {
  BidiReactor b;
  stub->async()->Bidi(ctx, &b);
  b.Begin();
  return DriveBidi(&b, ctx, plan);
}

// --api's names.
static const std::map<std::string, Api> kApis = {
    {"blocking", {SyncUnary, SyncServerStream, SyncClientStream, SyncBidi}},
    {"async", {AsyncUnary, AsyncServerStream, AsyncClientStream, AsyncBidi}},
    {"callback", {CbUnary, CbServerStream, CbClientStream, CbBidi}},
};

// A context with a deadline in ms (the cancelled step's is cancelled after
// cancel_ms by a thread of its own).
struct Ctx {
  grpc::ClientContext ctx;
  std::thread canceller;
  explicit Ctx(int deadline_ms, int cancel_ms = -1) {
    ctx.set_deadline(In(deadline_ms));
    if (cancel_ms >= 0)
      canceller = std::thread([this, cancel_ms] {
        std::this_thread::sleep_for(std::chrono::milliseconds(cancel_ms));
        ctx.TryCancel();
      });
  }
  ~Ctx() {
    if (canceller.joinable()) canceller.join();
  }
};

// The scenario's steps in Go's order, each call made with `api`; prints the
// [step, code] pairs.
static int Scenario(const Api& api, const std::string& target, const std::string& silent,
                    const std::string& down) {
  auto channel = NewChannel(target, 0);
  auto main_stub = Echo::NewStub(channel);
  Echo::Stub* stub = main_stub.get();
  auto unary = [&api](const char* step, Echo::Stub* s, const EchoRequest& req, int ms) {
    Ctx c(ms);
    Step(step, api.unary(s, &c.ctx, req));
  };
  auto server_stream = [&api](const char* step, Echo::Stub* s, const EchoRequest& req, int ms) {
    Ctx c(ms);
    Step(step, api.server_stream(s, &c.ctx, req));
  };
  auto client_stream = [&api](const char* step, Echo::Stub* s,
                              const std::vector<EchoRequest>& reqs) {
    Ctx c(10000);
    Step(step, api.client_stream(s, &c.ctx, reqs));
  };
  auto bidi = [&api](const char* step, Echo::Stub* s, int ms, const BidiPlan& plan) {
    Ctx c(ms);
    Step(step, api.bidi(s, &c.ctx, plan));
  };
  for (int i = 0; i < 3; i++) unary("unary ok", stub, R(0, 0, 0), 10000);
  unary("unary not found", stub, R(5, 0, 0), 10000);
  server_stream("server stream ok", stub, R(0, 0, 3), 10000);
  server_stream("server stream aborted", stub, R(10, 0, 2), 10000);
  client_stream("client stream ok", stub, {R(0, 0, 0), R(0, 0, 0), R(0, 0, 0)});
  client_stream("client stream invalid argument", stub, {R(0, 0, 0), R(3, 0, 0)});
  bidi("bidi ok", stub, 10000, {true, 0, {{R(0, 0, 1), 1}, {R(0, 0, 2), 2}}});
  bidi("bidi internal", stub, 10000, {false, 0, {{R(13, 0, 0), 0}}});

  // Each call to the silent and the down server on a channel of its own.
  int id = 1;
  auto fresh = [&id](const std::string& addr) { return Echo::NewStub(NewChannel(addr, id++)); };
  unary("silent unary", fresh(silent).get(), R(0, 0, 0), 300);
  server_stream("silent server stream", fresh(silent).get(), R(0, 0, 1), 300);
  unary("down unary", fresh(down).get(), R(0, 0, 0), 10000);
  server_stream("down server stream", fresh(down).get(), R(0, 0, 1), 10000);
  client_stream("down client stream", fresh(down).get(), {R(0, 0, 0)});
  bidi("down bidi", fresh(down).get(), 10000, {false, 0, {{R(0, 0, 0), 0}}});

  unary("unary past deadline", stub, R(0, 0, 0), -1000);
  server_stream("server stream deadline", stub, R(0, 2000, 3), 300);
  bidi("bidi deadline", stub, 300, {false, 0, {{R(0, 2000, 1), 1}}});
  {
    Ctx c(10000, 100);
    Step("unary cancelled", api.unary(stub, &c.ctx, R(0, 2000, 0)));
  }
  bidi("bidi cancelled", stub, 10000, {false, 1, {{R(0, 0, 1), 1}}});

  std::string out = "[";
  for (const auto& st : g_steps)
    out += (out.size() > 1 ? ", [\"" : "[\"") + st.first + "\", \"" + st.second + "\"]";
  printf("%s]\n", out.c_str());
  return 0;
}

// A started server on a port of its own, answering every call Unimplemented
// (the callback API needs no thread of ours): makes this process one that
// serves as well as calls.
static std::unique_ptr<grpc::Server> ServeNothing() {
  static grpc::CallbackGenericService unimplemented;
  grpc::ServerBuilder builder;
  builder.RegisterCallbackGenericService(&unimplemented);
  int bound = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &bound);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    fprintf(stderr, "cannot serve on 127.0.0.1\n");
    exit(1);
  }
  return server;
}

int main(int argc, char** argv) {
  std::string target, silent, down, path, request = FromHex("220178");  // EchoRequest{text: "x"}
  std::string api = "blocking";
  int hold = 0, channels = 1, count = 1, deadline_ms = 10000;
  bool mix = false, scenario = false, have_path = false, serve = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    bool more = i + 1 < argc;
    if (a == "--target" && more) target = argv[++i];
    else if (a == "--hold" && more) hold = atoi(argv[++i]);
    else if (a == "--channels" && more) channels = atoi(argv[++i]);
    else if (a == "--path" && more) path = FromHex(argv[++i]), have_path = true;
    else if (a == "--count" && more) count = atoi(argv[++i]);
    else if (a == "--request" && more) request = FromHex(argv[++i]);
    else if (a == "--deadline-ms" && more) deadline_ms = atoi(argv[++i]);
    else if (a == "--mix") mix = true;
    else if (a == "--scenario") scenario = true;
    else if (a == "--api" && more) api = argv[++i];
    else if (a == "--serve") serve = true;
    else if (a == "--silent" && more) silent = argv[++i];
    else if (a == "--down" && more) down = argv[++i];
    else target.clear(), i = argc;
  }
  if (target.empty() || channels < 1 || (hold > 0) + have_path + mix + scenario != 1 ||
      scenario != (!silent.empty() && !down.empty()) || !kApis.count(api)) {
    fprintf(stderr,
            "usage: %s --target HOST:PORT (--hold N [--channels K] | --path HEX [--count N] "
            "[--request HEX] [--deadline-ms MS] | --mix | --scenario --silent HOST:PORT "
            "--down HOST:PORT [--api blocking|async|callback]) [--serve]\n",
            argv[0]);
    return 2;
  }
  std::unique_ptr<grpc::Server> server;
  if (serve) server = ServeNothing();
  if (hold > 0) return Hold(target, hold, channels);
  if (have_path) return CallPath(target, path, count, request, deadline_ms);
  if (scenario) return Scenario(kApis.at(api), target, silent, down);
  return Mix(target);
}
