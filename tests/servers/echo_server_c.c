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
#include <time.h>

#include "common.h"

/* How each method is served:
   Unary, ServerStream: registered, payload read with the call; all work on
     the main NEXT queue (main loop state machine).
   ClientStream: registered without payload; bound to a per-call pluck queue
     and run by its own thread.
   Bidi and anything else: unregistered (grpc_server_request_call), per-call
     pluck queue and thread; unknown paths get UNIMPLEMENTED. */
enum method { M_UNARY, M_SSTREAM, M_CSTREAM, M_GENERIC };
static const char* const kPaths[] = {"/grpcprom.test.Echo/Unary",
                                     "/grpcprom.test.Echo/ServerStream",
                                     "/grpcprom.test.Echo/ClientStream"};
#define BIDI_PATH "/grpcprom.test.Echo/Bidi"

/* Tags posted to the main NEXT queue. */
enum tag_kind { TAG_NEW_CALL, TAG_OP, TAG_CLOSE, TAG_SHUTDOWN };
typedef struct {
  enum tag_kind kind;
  void* owner;
} tag;

static grpc_server* g_server;
static grpc_completion_queue* g_cq; /* NEXT queue: new calls, Unary/ServerStream work */
static void* g_registered[3];
static atomic_int g_threads; /* running per-call threads */

/* ---- protobuf: EchoRequest {1 code, 2 sleep_ms, 3 responses, 4 text}, EchoReply {1 text} */

typedef struct {
  int32_t code, sleep_ms, responses;
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
  grpc_completion_queue* call_cq; /* g_cq, or a fresh pluck queue */
  grpc_call* call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_call_details details; /* unregistered calls only */
  grpc_byte_buffer* payload; /* Unary and ServerStream only */
} request;

static void post_request(enum method m) {
  request* r = calloc(1, sizeof *r);
  r->t.kind = TAG_NEW_CALL;
  r->t.owner = r;
  r->method = m;
  grpc_metadata_array_init(&r->md);
  grpc_call_details_init(&r->details);
  grpc_call_error e;
  if (m == M_GENERIC) {
    r->call_cq = grpc_completion_queue_create_for_pluck(NULL);
    e = grpc_server_request_call(g_server, &r->call, &r->details, &r->md, r->call_cq, g_cq,
                                 &r->t);
  } else {
    r->call_cq = m == M_CSTREAM ? grpc_completion_queue_create_for_pluck(NULL) : g_cq;
    e = grpc_server_request_registered_call(g_server, g_registered[m], &r->call, &r->deadline,
                                            &r->md, m == M_CSTREAM ? NULL : &r->payload,
                                            r->call_cq, g_cq, &r->t);
  }
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "request call: %s\n", grpc_call_error_to_string(e));
    abort();
  }
}

/* Releases everything a request holds, the call and its pluck queue included;
   every event on that pluck queue must have been plucked. */
static void free_request(request* r) {
  if (r->call) grpc_call_unref(r->call);
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

/* Next move after the sleep, or after a reply was sent (ok: it was). */
static void ncall_step(ncall* c, int ok) {
  if (!ok || c->closed) /* closed before our status: cancelled */
    ncall_send(c, NULL, GRPC_STATUS_CANCELLED);
  else if (c->r->method == M_UNARY)
    ncall_send(c, c->req.code == 0 ? encode_reply(&c->req) : NULL, c->req.code);
  else if (c->sent++ < c->req.responses)
    ncall_send(c, encode_reply(&c->req), -1);
  else
    ncall_send(c, NULL, c->req.code);
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
    if (c->state == N_SLEEPING && (c->closed || gpr_time_cmp(now, c->wake) >= 0))
      ncall_step(c, 1);
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

/* Reads the next request into `req`; returns 0 at end of stream or failure
   (leaving `req` as it was). */
static int pcall_recv(pcall* c, echo_req* req) {
  grpc_byte_buffer* bb = NULL;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &bb;
  start_batch(c->r->call, &op, 1, &c->op);
  if (!pluck_op(c) || !bb) return 0;
  decode_request(bb, req);
  grpc_byte_buffer_destroy(bb);
  return 1;
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
    pcall_send(&c, NULL, GRPC_STATUS_UNIMPLEMENTED);
  } else if (c.r->method == M_CSTREAM) {
    while (pcall_recv(&c, &req)) {
    } /* req is now the last request */
    if (!pcall_sleep(&c, req.sleep_ms))
      pcall_send(&c, NULL, GRPC_STATUS_CANCELLED);
    else
      pcall_send(&c, req.code == 0 ? encode_reply(&req) : NULL, req.code);
  } else { /* Bidi */
    int code = GRPC_STATUS_OK;
    while (code == GRPC_STATUS_OK && pcall_recv(&c, &req)) {
      if (!pcall_sleep(&c, req.sleep_ms)) code = GRPC_STATUS_CANCELLED;
      for (int i = 0; code == GRPC_STATUS_OK && i < req.responses; i++)
        if (!pcall_send(&c, encode_reply(&req), -1)) code = GRPC_STATUS_CANCELLED;
      if (code == GRPC_STATUS_OK) code = req.code;
    }
    pcall_send(&c, NULL, code);
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

/* ---- main loop */

int main(int argc, char** argv) {
  sigset_t stop;
  block_stop_signals(&stop);
  int port = 0, threads = 1;
  parse_args(argc, argv, &port, &threads); /* --threads is accepted and ignored */

  grpc_init();
  g_cq = grpc_completion_queue_create_for_next(NULL);
  g_server = grpc_server_create(NULL, NULL);
  for (int m = M_UNARY; m <= M_CSTREAM; m++)
    g_registered[m] = grpc_server_register_method(
        g_server, kPaths[m], NULL,
        m == M_CSTREAM ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  grpc_server_register_completion_queue(g_server, g_cq, NULL);
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  grpc_server_credentials* creds = grpc_insecure_server_credentials_create();
  int bound = grpc_server_add_http2_port(g_server, addr, creds);
  grpc_server_credentials_release(creds);
  if (bound == 0) {
    fprintf(stderr, "cannot listen on %s\n", addr);
    return 1;
  }
  grpc_server_start(g_server);
  for (int m = M_UNARY; m <= M_GENERIC; m++) post_request((enum method)m);
  announce_ready(bound);

  tag shutdown_tag = {TAG_SHUTDOWN, NULL};
  int stopping = 0, cancelled_all = 0, server_down = 0, cq_down = 0;
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
          if (!stopping) post_request(r->method);
          if (r->method == M_UNARY || r->method == M_SSTREAM)
            ncall_start(r);
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
        case TAG_SHUTDOWN:
          server_down = 1;
          break;
      }
    }
    if (!stopping && sigtimedwait(&stop, NULL, &no_wait) > 0) {
      stopping = 1; /* running calls get one second, then are cancelled */
      grpc_server_shutdown_and_notify(g_server, g_cq, &shutdown_tag);
      cancel_at = after_ms(1000);
    }
    if (stopping && !server_down && !cancelled_all &&
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
  grpc_server_destroy(g_server);
  grpc_completion_queue_destroy(g_cq);
  grpc_shutdown();
  return 0;
}
