// Test client in C++: holds thousands of calls open, calls arbitrary paths, runs a small mix or the
// client scenario; prints what it saw as JSON. With --serve it also serves (no service), to be a
// process that is both server and client.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
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

// ---- --scenario: the client scenario (as tests/go_reference/client/main.go), blocking stub.

// [step, code] in the order the steps ran.
static std::vector<std::pair<std::string, std::string>> g_steps;

static void Step(const char* step, const grpc::Status& s) { g_steps.emplace_back(step, CodeName(s)); }

// One Unary call with a deadline in ms.
static void ScUnary(const char* step, Echo::Stub* stub, const EchoRequest& req, int deadline_ms) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(deadline_ms));
  EchoReply rep;
  Step(step, stub->Unary(&ctx, req, &rep));
}

// A ServerStream call read to its end.
static void ScServerStream(const char* step, Echo::Stub* stub, const EchoRequest& req,
                           int deadline_ms) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(deadline_ms));
  auto reader = stub->ServerStream(&ctx, req);
  EchoReply rep;
  while (reader->Read(&rep)) {
  }
  Step(step, reader->Finish());
}

// A ClientStream call: the requests (up to the first failed write), then close and finish.
static void ScClientStream(const char* step, Echo::Stub* stub, const std::vector<EchoRequest>& reqs) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(10000));
  EchoReply rep;
  auto writer = stub->ClientStream(&ctx, &rep);
  for (const auto& r : reqs)
    if (!writer->Write(r)) break;
  writer->WritesDone();
  Step(step, writer->Finish());
}

// A Bidi call: each (request, replies to read) in turn; then half-close if
// asked, or cancel after `cancel_at` steps; then read to the end and finish.
// As Go's RecvMsg loop: a failed write leaves the end to reads, a failed
// read is the end (no read after it).
static void ScBidi(const char* step, Echo::Stub* stub, int deadline_ms, bool writes_done,
                   int cancel_at, const std::vector<std::pair<EchoRequest, int>>& steps) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(deadline_ms));
  auto stream = stub->Bidi(&ctx);
  EchoReply rep;
  bool open = true, read_end = false;
  for (size_t i = 0; i < steps.size() && open; i++) {
    open = stream->Write(steps[i].first);
    for (int n = 0; n < steps[i].second && open; n++) read_end = !(open = stream->Read(&rep));
    if (cancel_at == static_cast<int>(i) + 1) ctx.TryCancel();
  }
  if (open && writes_done) stream->WritesDone();
  while (!read_end && stream->Read(&rep)) {
  }
  Step(step, stream->Finish());
}

static int Scenario(const std::string& target, const std::string& silent, const std::string& down) {
  auto channel = NewChannel(target, 0);
  auto stub = Echo::NewStub(channel);
  for (int i = 0; i < 3; i++) ScUnary("unary ok", stub.get(), R(0, 0, 0), 10000);
  ScUnary("unary not found", stub.get(), R(5, 0, 0), 10000);
  ScServerStream("server stream ok", stub.get(), R(0, 0, 3), 10000);
  ScServerStream("server stream aborted", stub.get(), R(10, 0, 2), 10000);
  ScClientStream("client stream ok", stub.get(), {R(0, 0, 0), R(0, 0, 0), R(0, 0, 0)});
  ScClientStream("client stream invalid argument", stub.get(), {R(0, 0, 0), R(3, 0, 0)});
  ScBidi("bidi ok", stub.get(), 10000, true, 0, {{R(0, 0, 1), 1}, {R(0, 0, 2), 2}});
  ScBidi("bidi internal", stub.get(), 10000, false, 0, {{R(13, 0, 0), 0}});

  // Each call to the silent and the down server on a channel of its own.
  int id = 1;
  auto fresh = [&id](const std::string& addr) { return Echo::NewStub(NewChannel(addr, id++)); };
  ScUnary("silent unary", fresh(silent).get(), R(0, 0, 0), 300);
  ScServerStream("silent server stream", fresh(silent).get(), R(0, 0, 1), 300);
  ScUnary("down unary", fresh(down).get(), R(0, 0, 0), 10000);
  ScServerStream("down server stream", fresh(down).get(), R(0, 0, 1), 10000);
  ScClientStream("down client stream", fresh(down).get(), {R(0, 0, 0)});
  ScBidi("down bidi", fresh(down).get(), 10000, false, 0, {{R(0, 0, 0), 0}});

  ScUnary("unary past deadline", stub.get(), R(0, 0, 0), -1000);
  ScServerStream("server stream deadline", stub.get(), R(0, 2000, 3), 300);
  ScBidi("bidi deadline", stub.get(), 300, false, 0, {{R(0, 2000, 1), 1}});
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(10000));
    std::thread canceller([&ctx] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      ctx.TryCancel();
    });
    EchoReply rep;
    grpc::Status s = stub->Unary(&ctx, R(0, 2000, 0), &rep);
    canceller.join();
    Step("unary cancelled", s);
  }
  ScBidi("bidi cancelled", stub.get(), 10000, false, 1, {{R(0, 0, 1), 1}});

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
    else if (a == "--serve") serve = true;
    else if (a == "--silent" && more) silent = argv[++i];
    else if (a == "--down" && more) down = argv[++i];
    else target.clear(), i = argc;
  }
  if (target.empty() || channels < 1 || (hold > 0) + have_path + mix + scenario != 1 ||
      scenario != (!silent.empty() && !down.empty())) {
    fprintf(stderr,
            "usage: %s --target HOST:PORT (--hold N [--channels K] | --path HEX [--count N] "
            "[--request HEX] [--deadline-ms MS] | --mix | --scenario --silent HOST:PORT "
            "--down HOST:PORT) [--serve]\n",
            argv[0]);
    return 2;
  }
  std::unique_ptr<grpc::Server> server;
  if (serve) server = ServeNothing();
  if (hold > 0) return Hold(target, hold, channels);
  if (have_path) return CallPath(target, path, count, request, deadline_ms);
  if (scenario) return Scenario(target, silent, down);
  return Mix(target);
}
