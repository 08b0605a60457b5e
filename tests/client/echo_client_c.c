/* Test client in plain C on gRPC core: one unary Echo call with a hand-encoded request, its
 * deadline on any clock gRPC takes. */
#define _POSIX_C_SOURCE 200809L

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Encodes EchoRequest{text = text} (texts under 128 bytes). */
static grpc_byte_buffer* encode_request(const char* text) {
  size_t n = strlen(text);
  uint8_t buf[130];
  buf[0] = 0x22; /* field 4, length-delimited */
  buf[1] = (uint8_t)n;
  memcpy(buf + 2, text, n);
  grpc_slice s = grpc_slice_from_copied_buffer((const char*)buf, n + 2);
  grpc_byte_buffer* bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

int main(int argc, char** argv) {
  const char* target = NULL;
  const char* text = "hello";
  int wait = 0;
  const char* clock = "realtime";
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--target") == 0)
      target = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--text") == 0)
      text = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--deadline") == 0)
      clock = argv[++i];
    else if (strcmp(argv[i], "--wait") == 0)
      wait = 1; /* stay alive (channel open) until a line arrives on stdin */
    else
      target = NULL, i = argc;
  }
  gpr_timespec deadline;
  if (strcmp(clock, "realtime") == 0) /* 10 s from now */
    deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(10, GPR_TIMESPAN));
  else if (strcmp(clock, "span") == 0) /* 10 s, as a span: gRPC adds it to now */
    deadline = gpr_time_from_seconds(10, GPR_TIMESPAN);
  else if (strcmp(clock, "past") == 0)
    deadline = gpr_inf_past(GPR_CLOCK_MONOTONIC);
  else if (strcmp(clock, "none") == 0)
    deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
  else
    target = NULL;
  if (target == NULL || strlen(text) > 127) {
    fprintf(stderr, "usage: %s --target HOST:PORT [--text T] [--deadline realtime|span|past|none] [--wait]\n",
            argv[0]);
    return 2;
  }

  grpc_init();
  grpc_channel_credentials* creds = grpc_insecure_credentials_create();
  grpc_channel* channel = grpc_channel_create(target, creds, NULL);
  grpc_channel_credentials_release(creds);
  grpc_completion_queue* cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_call* call = grpc_channel_create_call(channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                             grpc_slice_from_static_string("/grpcprom.test.Echo/Unary"),
                                             NULL, deadline, NULL);

  grpc_byte_buffer* request = encode_request(text);
  grpc_byte_buffer* reply = NULL;
  grpc_metadata_array initial_md, trailing_md;
  grpc_metadata_array_init(&initial_md);
  grpc_metadata_array_init(&trailing_md);
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice details;
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = request;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &reply;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
  ops[5].data.recv_status_on_client.status = &status;
  ops[5].data.recv_status_on_client.status_details = &details;
  char tag;
  if (grpc_call_start_batch(call, ops, 6, &tag, NULL) != GRPC_CALL_OK) {
    fprintf(stderr, "grpc_call_start_batch failed\n");
    return 1;
  }
  grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

  size_t reply_len = 0;
  if (reply) {
    reply_len = grpc_byte_buffer_length(reply);
    grpc_byte_buffer_destroy(reply);
  }
  printf("status %d reply %zu\n", (int)status, reply_len);
  fflush(stdout);
  if (wait) {
    char line[16];
    if (fgets(line, sizeof line, stdin) == NULL) line[0] = '\0';
  }

  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&initial_md);
  grpc_metadata_array_destroy(&trailing_md);
  grpc_byte_buffer_destroy(request);
  grpc_call_unref(call);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  grpc_channel_destroy(channel);
  grpc_shutdown();
  return 0;
}
