/* Echo test server in plain C on gRPC core, with hand-written protobuf encoding. */
#define _POSIX_C_SOURCE 200809L

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* How each method is served:
   Unary, ServerStream: registered, payload read with the call; all work on
     the main NEXT queue (main loop state machine).
   ClientStream: registered without payload; bound to a per-call pluck queue
     and run by its own thread.
   Bidi and anything else: unregistered (grpc_server_request_call), per-call
     pluck queue and thread; unknown paths get UNIMPLEMENTED (or, with
     --generic-ok, an OK echo of their request).
   --extra-methods N: unary /grpcprom.test.Many/M<i>, registered with their
     payload, answered OK with an empty reply in one batch on the main queue.
   --prefork N: the pre-fork model: a parent that never touches gRPC forks N
     workers, each a whole server on the same --port (gRPC sets SO_REUSEPORT),
     and on SIGTERM stops them and waits for them. */
enum method { M_UNARY, M_SSTREAM, M_CSTREAM, M_GENERIC, M_EXTRA };
static const char* const kPaths[] = {"/grpcprom.test.Echo/Unary",
                                     "/grpcprom.test.Echo/ServerStream",
                                     "/grpcprom.test.Echo/ClientStream"};
#define BIDI_PATH "/grpcprom.test.Echo/Bidi"

/* Tags posted to the main NEXT queue. */
enum tag_kind { TAG_NEW_CALL, TAG_OP, TAG_CLOSE, TAG_EXTRA_DONE, TAG_SHUTDOWN, TAG_RESTART };
typedef struct {
  enum tag_kind kind;
  void* owner;
} tag;

static grpc_server* g_server;
static grpc_completion_queue* g_cq; /* NEXT queue: new calls, Unary/ServerStream work */
static void* g_registered[3];
static atomic_int g_threads;  /* running per-call threads */
static atomic_int g_finished; /* calls that reached the application and are done */

/* Options of this server only (parse_args in common.h takes the rest). */
static int g_generic_ok;    /* --generic-ok */
static int g_extra;         /* --extra-methods N */
static int g_restart_after; /* --restart-after N */
static int g_slow_exit_ms;  /* --slow-exit-ms N */
static int g_fork_worker;   /* --fork-worker */
static int g_prefork;       /* --prefork N */
static char** g_extra_paths;
static void** g_extra_registered;

/* ---- protobuf: EchoRequest {1 code, 2 sleep_ms, 3 responses, 4 text,
   5 ignore_cancel, 6 last_with_status}, EchoReply {1 text} */

typedef struct {
  int32_t code, sleep_ms, responses;
  int ignore_cancel, last_with_status;
  char* text;
  size_t text_len;
} echo_req;

static int read_varint(const uint8_t** p, const uint8_t* end, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 1;
  }
  return 0;
}

/* Decodes `bb` (NULL means an empty message) into `r`, replacing its old
   contents; a malformed message becomes a request to fail with INTERNAL. */
static void decode_request(grpc_byte_buffer* bb, echo_req* r) {
  free(r->text);
  memset(r, 0, sizeof *r);
  if (!bb) return;
  grpc_byte_buffer_reader rd;
  if (!grpc_byte_buffer_reader_init(&rd, bb)) {
    r->code = GRPC_STATUS_INTERNAL;
    return;
  }
  grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  const uint8_t* p = GRPC_SLICE_START_PTR(s);
  const uint8_t* end = GRPC_SLICE_END_PTR(s);
  int ok = 1;
  while (ok && p < end) {
    uint64_t key, v;
    if (!(ok = read_varint(&p, end, &key))) break;
    switch (key & 7) {
      case 0: /* varint */
        if (!(ok = read_varint(&p, end, &v))) break;
        if (key >> 3 == 1) r->code = (int32_t)v;
        if (key >> 3 == 2) r->sleep_ms = (int32_t)v;
        if (key >> 3 == 3) r->responses = (int32_t)v;
        if (key >> 3 == 5) r->ignore_cancel = v != 0;
        if (key >> 3 == 6) r->last_with_status = v != 0;
        break;
      case 2: /* length-delimited */
        if (!(ok = read_varint(&p, end, &v) && v <= (uint64_t)(end - p))) break;
        if (key >> 3 == 4) {
          free(r->text);
          r->text = malloc(v + 1);
          memcpy(r->text, p, v);
          r->text_len = v;
        }
        p += v;
        break;
      case 1: /* fixed64 */
        if ((ok = end - p >= 8)) p += 8;
        break;
      case 5: /* fixed32 */
        if ((ok = end - p >= 4)) p += 4;
        break;
      default:
        ok = 0;
    }
  }
  grpc_slice_unref(s);
  if (!ok) r->code = GRPC_STATUS_INTERNAL;
}

/* Encodes EchoReply{text = r->text}. */
static grpc_byte_buffer* encode_reply(const echo_req* r) {
  size_t vlen = 1;
  for (uint64_t n = r->text_len; n >= 0x80; n >>= 7) vlen++;
  grpc_slice s = grpc_slice_malloc(1 + vlen + r->text_len);
  uint8_t* p = GRPC_SLICE_START_PTR(s);
  *p++ = 0x0a; /* field 1, length-delimited */
  uint64_t n = r->text_len;
  do {
    *p++ = (uint8_t)((n & 0x7f) | (n >= 0x80 ? 0x80 : 0));
    n >>= 7;
  } while (n);
  if (r->text_len) memcpy(p, r->text, r->text_len);
  grpc_byte_buffer* bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

/* ---- helpers */

static gpr_timespec after_ms(int ms) {
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis(ms < 0 ? 0 : ms, GPR_TIMESPAN));
}

static void start_batch(grpc_call* call, const grpc_op* ops, size_t n, void* t) {
  grpc_call_error e = grpc_call_start_batch(call, ops, n, t, NULL);
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "grpc_call_start_batch: %s\n", grpc_call_error_to_string(e));
    abort();
  }
}

/* Starts a RECV_CLOSE_ON_SERVER batch: it completes when the call ends,
   before we sent a status only if the call was cancelled. */
static void start_recv_close(grpc_call* call, int* cancelled, void* t) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = cancelled;
  start_batch(call, &op, 1, t);
}

/* Starts one sending batch: initial metadata the first time, then the
   message `out` if not NULL, then the status `code` if it is >= 0. */
static void start_send(grpc_call* call, int* md_sent, grpc_byte_buffer* out, int code,
                       void* t) {
  grpc_slice details = grpc_slice_from_static_string(
      code == GRPC_STATUS_OK ? "" : code == GRPC_STATUS_CANCELLED ? "cancelled" : "requested");
  grpc_op ops[3];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!*md_sent) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    *md_sent = 1;
  }
  if (out) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = out;
  }
  if (code >= 0) {
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n++].data.send_status_from_server.status_details = &details;
  }
  start_batch(call, ops, n, t);
}

/* ---- requested calls */

/* One outstanding request for a new call; handed over to its handler. */
typedef struct {
  tag t;
  enum method method;
  int extra; /* M_EXTRA: which of them */
  grpc_completion_queue* call_cq; /* g_cq, or a fresh pluck queue */
  grpc_call* call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_call_details details; /* unregistered calls only */
  grpc_byte_buffer* payload; /* Unary, ServerStream and extra methods only */
  tag done;                  /* extra methods: their one batch */
  int cancelled;
} request;

static void post_request(enum method m, int extra) {
  request* r = calloc(1, sizeof *r);
  r->t.kind = TAG_NEW_CALL;
  r->t.owner = r;
  r->method = m;
  r->extra = extra;
  grpc_metadata_array_init(&r->md);
  grpc_call_details_init(&r->details);
  grpc_call_error e;
  if (m == M_GENERIC) {
    r->call_cq = grpc_completion_queue_create_for_pluck(NULL);
    e = grpc_server_request_call(g_server, &r->call, &r->details, &r->md, r->call_cq, g_cq,
                                 &r->t);
  } else {
    void* method = m == M_EXTRA ? g_extra_registered[extra] : g_registered[m];
    r->call_cq = m == M_CSTREAM ? grpc_completion_queue_create_for_pluck(NULL) : g_cq;
    e = grpc_server_request_registered_call(g_server, method, &r->call, &r->deadline, &r->md,
                                            m == M_CSTREAM ? NULL : &r->payload, r->call_cq,
                                            g_cq, &r->t);
  }
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "request call: %s\n", grpc_call_error_to_string(e));
    abort();
  }
}

/* Releases everything a request holds, the call and its pluck queue included;
   every event on that pluck queue must have been plucked. */
static void free_request(request* r) {
  if (r->call) {
    grpc_call_unref(r->call);
    atomic_fetch_add(&g_finished, 1);
  }
  if (r->payload) grpc_byte_buffer_destroy(r->payload);
  grpc_metadata_array_destroy(&r->md);
  grpc_call_details_destroy(&r->details);
  if (r->call_cq != g_cq) {
    grpc_completion_queue_shutdown(r->call_cq);
    while (grpc_completion_queue_pluck(r->call_cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
               .type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(r->call_cq);
  }
  free(r);
}

/* ---- Unary and ServerStream: state machines driven by the main loop */

typedef struct ncall {
  tag op, close;
  request* r;
  echo_req req;
  enum { N_SLEEPING, N_SENDING, N_FINISHING, N_DONE } state;
  gpr_timespec wake;
  int sent, md_sent, cancelled, closed;
  grpc_byte_buffer* out; /* message of the batch in flight */
  struct ncall* next;
} ncall;

static ncall* g_ncalls; /* every live ncall */

static void ncall_start(request* r) {
  ncall* c = calloc(1, sizeof *c);
  c->op = (tag){TAG_OP, c};
  c->close = (tag){TAG_CLOSE, c};
  c->r = r;
  decode_request(r->payload, &c->req);
  start_recv_close(r->call, &c->cancelled, &c->close);
  c->state = N_SLEEPING;
  c->wake = after_ms(c->req.sleep_ms);
  c->next = g_ncalls;
  g_ncalls = c;
}

static void ncall_send(ncall* c, grpc_byte_buffer* out, int code) {
  c->out = out;
  c->state = code >= 0 ? N_FINISHING : N_SENDING;
  start_send(c->r->call, &c->md_sent, out, code, &c->op);
}

/* Next move after the sleep, or after a reply was sent (ok: it was). A call
   closed before our status was cancelled, unless the request ignores that:
   then its sends go on and fail. A Unary reply goes with the status, except
   with ignore_cancel alone: then it goes first, in a batch of its own. */
static void ncall_step(ncall* c, int ok) {
  const echo_req* q = &c->req;
  if ((!ok || c->closed) && !q->ignore_cancel) {
    ncall_send(c, NULL, GRPC_STATUS_CANCELLED);
  } else if (c->r->method == M_UNARY) {
    int reply = q->code == 0 || q->last_with_status;
    int apart = q->ignore_cancel && !q->last_with_status;
    if (reply && apart && c->sent++ == 0)
      ncall_send(c, encode_reply(q), -1);
    else
      ncall_send(c, reply && !apart ? encode_reply(q) : NULL, q->code);
  } else if (c->sent++ < q->responses) {
    int last = q->last_with_status && c->sent == q->responses;
    ncall_send(c, encode_reply(q), last ? q->code : -1);
  } else {
    ncall_send(c, NULL, q->code);
  }
}

static void ncall_maybe_free(ncall* c) {
  if (c->state != N_DONE || !c->closed) return;
  for (ncall** pp = &g_ncalls; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  }
  free(c->req.text);
  free_request(c->r);
  free(c);
}

static void ncall_on_op(ncall* c, int ok) {
  if (c->out) grpc_byte_buffer_destroy(c->out);
  c->out = NULL;
  if (c->state == N_SENDING)
    ncall_step(c, ok);
  else
    c->state = N_DONE;
  ncall_maybe_free(c);
}

/* Steps the sleeping calls whose time has come or that were cancelled. */
static void ncall_wake_sleepers(void) {
  gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
  for (ncall* c = g_ncalls; c; c = c->next)
    if (c->state == N_SLEEPING && ((c->closed && !c->req.ignore_cancel) ||
                                   gpr_time_cmp(now, c->wake) >= 0))
      ncall_step(c, 1);
}

/* ---- extra methods: one batch answers the call */

static void extra_answer(request* r) {
  grpc_slice empty = grpc_empty_slice();
  grpc_byte_buffer* out = grpc_raw_byte_buffer_create(&empty, 1);
  grpc_slice details = grpc_empty_slice();
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = out;
  ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
  ops[2].data.send_status_from_server.status_details = &details;
  ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[3].data.recv_close_on_server.cancelled = &r->cancelled;
  r->done = (tag){TAG_EXTRA_DONE, r};
  start_batch(r->call, ops, 4, &r->done);
  grpc_byte_buffer_destroy(out); /* the batch holds its own reference */
}

/* ---- ClientStream, Bidi, unknown: a thread plucking its call's own queue */

typedef struct {
  request* r;
  int md_sent, cancelled, closed;
  char op, close; /* their addresses are the pluck tags */
} pcall;

static int pluck_op(pcall* c) {
  grpc_event ev = grpc_completion_queue_pluck(c->r->call_cq, &c->op,
                                              gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Sends `out` (then destroyed) and/or status `code` (if >= 0); returns success. */
static int pcall_send(pcall* c, grpc_byte_buffer* out, int code) {
  start_send(c->r->call, &c->md_sent, out, code, &c->op);
  int ok = pluck_op(c);
  if (out) grpc_byte_buffer_destroy(out);
  return ok;
}

/* Reads the next message; NULL at end of stream or on failure. */
static grpc_byte_buffer* pcall_recv_raw(pcall* c) {
  grpc_byte_buffer* bb = NULL;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &bb;
  start_batch(c->r->call, &op, 1, &c->op);
  if (!pluck_op(c) && bb) {
    grpc_byte_buffer_destroy(bb);
    bb = NULL;
  }
  return bb;
}

/* Reads the next request into `req`; returns 0 at end of stream or failure
   (leaving `req` as it was). */
static int pcall_recv(pcall* c, echo_req* req) {
  grpc_byte_buffer* bb = pcall_recv_raw(c);
  if (!bb) return 0;
  decode_request(bb, req);
  grpc_byte_buffer_destroy(bb);
  return 1;
}

/* --generic-ok: any path is answered OK with its one request echoed back,
   as a proxy would. It reads one message only, so the call looks unary. A
   request that parses as an EchoRequest with ignore_cancel sleeps blind,
   then sends the reply and the status in two batches. */
static void generic_echo(pcall* c) {
  grpc_byte_buffer* in = pcall_recv_raw(c);
  echo_req req;
  memset(&req, 0, sizeof req);
  decode_request(in, &req);
  grpc_byte_buffer* out = in;
  if (!out) {
    grpc_slice empty = grpc_empty_slice();
    out = grpc_raw_byte_buffer_create(&empty, 1);
  }
  if (req.ignore_cancel && req.code == 0) {
    struct timespec ts = {req.sleep_ms / 1000, (long)(req.sleep_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    pcall_send(c, out, -1);
    pcall_send(c, NULL, GRPC_STATUS_OK);
  } else {
    pcall_send(c, out, GRPC_STATUS_OK);
  }
  free(req.text);
}

/* Sleeps `ms` by plucking the call's close event with that deadline, so a
   cancellation ends the sleep at once; returns 0 if the call was cancelled. */
static int pcall_sleep(pcall* c, int ms) {
  if (!c->closed)
    c->closed = grpc_completion_queue_pluck(c->r->call_cq, &c->close, after_ms(ms), NULL).type ==
                GRPC_OP_COMPLETE;
  return !c->closed;
}

static void* pcall_thread(void* arg) {
  pcall c;
  memset(&c, 0, sizeof c);
  c.r = arg;
  echo_req req;
  memset(&req, 0, sizeof req);
  start_recv_close(c.r->call, &c.cancelled, &c.close);

  if (c.r->method == M_GENERIC && grpc_slice_str_cmp(c.r->details.method, BIDI_PATH) != 0) {
    if (g_generic_ok)
      generic_echo(&c);
    else
      pcall_send(&c, NULL, GRPC_STATUS_UNIMPLEMENTED);
  } else if (c.r->method == M_CSTREAM) {
    while (pcall_recv(&c, &req)) {
    } /* req is now the last request */
    if (!pcall_sleep(&c, req.sleep_ms))
      pcall_send(&c, NULL, GRPC_STATUS_CANCELLED);
    else
      pcall_send(&c, req.code == 0 ? encode_reply(&req) : NULL, req.code);
  } else { /* Bidi */
    int code = GRPC_STATUS_OK, status_sent = 0;
    while (code == GRPC_STATUS_OK && !status_sent && pcall_recv(&c, &req)) {
      if (!pcall_sleep(&c, req.sleep_ms)) code = GRPC_STATUS_CANCELLED;
      for (int i = 0; code == GRPC_STATUS_OK && i < req.responses; i++) {
        if (req.last_with_status && i == req.responses - 1) {
          pcall_send(&c, encode_reply(&req), req.code);
          status_sent = 1;
        } else if (!pcall_send(&c, encode_reply(&req), -1)) {
          code = GRPC_STATUS_CANCELLED;
        }
      }
      if (code == GRPC_STATUS_OK) code = req.code;
      if (req.last_with_status && !status_sent) break; /* ends the call with req.code */
    }
    if (!status_sent) pcall_send(&c, NULL, code);
  }

  if (!c.closed)
    grpc_completion_queue_pluck(c.r->call_cq, &c.close, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  free(req.text);
  free_request(c.r);
  atomic_fetch_sub(&g_threads, 1);
  return NULL;
}

static void spawn_pcall(request* r) {
  pthread_t th;
  atomic_fetch_add(&g_threads, 1);
  if (pthread_create(&th, NULL, pcall_thread, r) != 0) {
    perror("pthread_create");
    abort();
  }
  pthread_detach(th);
}

/* ---- servers and options */

/* Creates, registers, binds and starts g_server on `port` (0: any) with
   one outstanding request per method; returns the bound port, 0 if none. */
static int start_server(int port) {
  g_server = grpc_server_create(NULL, NULL);
  for (int m = M_UNARY; m <= M_CSTREAM; m++)
    g_registered[m] = grpc_server_register_method(
        g_server, kPaths[m], NULL,
        m == M_CSTREAM ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  for (int i = 0; i < g_extra; i++)
    g_extra_registered[i] = grpc_server_register_method(
        g_server, g_extra_paths[i], NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  grpc_server_register_completion_queue(g_server, g_cq, NULL);
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  grpc_server_credentials* creds = grpc_insecure_server_credentials_create();
  int bound = grpc_server_add_http2_port(g_server, addr, creds);
  grpc_server_credentials_release(creds);
  if (bound == 0) {
    fprintf(stderr, "cannot listen on %s\n", addr);
    return 0;
  }
  grpc_server_start(g_server);
  for (int m = M_UNARY; m <= M_GENERIC; m++) post_request((enum method)m, 0);
  for (int i = 0; i < g_extra; i++) post_request(M_EXTRA, i);
  return bound;
}

/* Takes this server's own options out of argv, so that parse_args (shared
   with the C++ servers) sees only the common ones; returns the new argc. */
static int take_options(int argc, char** argv) {
  int out = 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--generic-ok") == 0)
      g_generic_ok = 1;
    else if (strcmp(argv[i], "--fork-worker") == 0)
      g_fork_worker = 1;
    else if (i + 1 < argc && strcmp(argv[i], "--extra-methods") == 0)
      g_extra = atoi(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--restart-after") == 0)
      g_restart_after = atoi(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--slow-exit-ms") == 0)
      g_slow_exit_ms = atoi(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--prefork") == 0)
      g_prefork = atoi(argv[++i]);
    else
      argv[out++] = argv[i];
  }
  argv[out] = NULL;
  if (g_extra < 0) g_extra = 0;
  g_extra_paths = calloc((size_t)g_extra + 1, sizeof *g_extra_paths);
  g_extra_registered = calloc((size_t)g_extra + 1, sizeof *g_extra_registered);
  for (int i = 0; i < g_extra; i++) {
    g_extra_paths[i] = malloc(48);
    snprintf(g_extra_paths[i], 48, "/grpcprom.test.Many/M%d", i);
  }
  return out;
}

/* --slow-exit-ms: an atexit handler, registered before the server starts,
   that says EXITING on stdout and then takes its time, as a host flushing
   its state at exit would. */
static void slow_exit(void) {
  printf("EXITING\n");
  fflush(stdout);
  const struct timespec pause = {g_slow_exit_ms / 1000, (long)(g_slow_exit_ms % 1000) * 1000000};
  nanosleep(&pause, NULL);
}

/* --fork-worker: a child that does nothing for two seconds, as a worker
   process forked after the server started would; announced on stdout. */
static pid_t fork_worker(void) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    const struct timespec two = {2, 0};
    nanosleep(&two, NULL);
    _exit(0);
  }
  if (pid < 0) {
    perror("fork");
    abort();
  }
  printf("WORKER %d\n", (int)pid);
  fflush(stdout);
  return pid;
}

/* --prefork: forks the workers; returns in each worker (-1), and in the
   parent once the workers it stopped at SIGTERM are gone (its exit code). */
static int prefork(int workers, sigset_t* stop) {
  pid_t* pids = calloc((size_t)workers, sizeof *pids);
  for (int i = 0; i < workers; i++) {
    fflush(stdout);
    pids[i] = fork();
    if (pids[i] == 0) {
      free(pids);
      return -1;
    }
    if (pids[i] < 0) {
      perror("fork");
      return 1;
    }
  }
  int signal_number, failed = 0;
  sigwait(stop, &signal_number);
  for (int i = 0; i < workers; i++) kill(pids[i], SIGTERM);
  for (int i = 0; i < workers; i++) {
    int status;
    waitpid(pids[i], &status, 0);
    failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  }
  free(pids);
  return failed;
}

/* ---- main loop */

int main(int argc, char** argv) {
  sigset_t stop;
  block_stop_signals(&stop);
  int port = 0, threads = 1;
  argc = take_options(argc, argv);
  parse_args(argc, argv, &port, &threads); /* --threads is accepted and ignored */
  if (g_prefork > 0) {
    int parent_exit = prefork(g_prefork, &stop);
    if (parent_exit >= 0) return parent_exit;
  }
  if (g_slow_exit_ms > 0) atexit(slow_exit);

  grpc_init();
  g_cq = grpc_completion_queue_create_for_next(NULL);
  int bound = start_server(port);
  if (bound == 0) return 1;
  announce_ready(bound);
  pid_t worker = g_fork_worker ? fork_worker() : 0;

  tag shutdown_tag = {TAG_SHUTDOWN, NULL}, restart_tag = {TAG_RESTART, NULL};
  int stopping = 0, cancelled_all = 0, server_down = 0, cq_down = 0, restarting = 0;
  gpr_timespec cancel_at = gpr_inf_future(GPR_CLOCK_MONOTONIC);
  const struct timespec no_wait = {0, 0};
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(g_cq, after_ms(5), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type == GRPC_OP_COMPLETE) {
      tag* t = ev.tag;
      switch (t->kind) {
        case TAG_NEW_CALL: {
          request* r = t->owner;
          if (!ev.success) { /* the server is shutting down */
            free_request(r);
            break;
          }
          if (!stopping && restarting != 1) post_request(r->method, r->extra);
          if (r->method == M_UNARY || r->method == M_SSTREAM)
            ncall_start(r);
          else if (r->method == M_EXTRA)
            extra_answer(r);
          else
            spawn_pcall(r);
          break;
        }
        case TAG_OP:
          ncall_on_op(t->owner, ev.success);
          break;
        case TAG_CLOSE:
          ((ncall*)t->owner)->closed = 1;
          ncall_maybe_free(t->owner);
          break;
        case TAG_EXTRA_DONE:
          free_request(t->owner);
          break;
        case TAG_SHUTDOWN:
          server_down = 1;
          break;
        case TAG_RESTART: /* the first server is down: a second one takes over */
          grpc_server_destroy(g_server);
          g_server = NULL;
          restarting = 2;
          if (stopping) {
            server_down = 1;
          } else if ((bound = start_server(0)) != 0) {
            announce_ready(bound);
          } else {
            return 1;
          }
          break;
      }
    }
    if (g_restart_after > 0 && !restarting && !stopping &&
        atomic_load(&g_finished) >= g_restart_after) {
      restarting = 1; /* until TAG_RESTART: no new requests on the old server */
      grpc_server_shutdown_and_notify(g_server, g_cq, &restart_tag);
    }
    if (worker > 0 && waitpid(worker, NULL, WNOHANG) == worker) worker = 0;
    if (!stopping && sigtimedwait(&stop, NULL, &no_wait) > 0) {
      stopping = 1; /* running calls get one second, then are cancelled */
      if (restarting != 1) grpc_server_shutdown_and_notify(g_server, g_cq, &shutdown_tag);
      cancel_at = after_ms(1000);
    }
    if (stopping && !server_down && !cancelled_all && g_server &&
        gpr_time_cmp(gpr_now(GPR_CLOCK_MONOTONIC), cancel_at) >= 0) {
      grpc_server_cancel_all_calls(g_server);
      cancelled_all = 1;
    }
    ncall_wake_sleepers();
    if (server_down && !g_ncalls && !cq_down) {
      grpc_completion_queue_shutdown(g_cq); /* the loop drains it, then exits */
      cq_down = 1;
    }
  }
  while (atomic_load(&g_threads) > 0) {
    const struct timespec tick = {0, 5000000};
    nanosleep(&tick, NULL);
  }
  if (worker > 0) waitpid(worker, NULL, 0);
  if (g_server) grpc_server_destroy(g_server);
  grpc_completion_queue_destroy(g_cq);
  grpc_shutdown();
  return 0;
}
