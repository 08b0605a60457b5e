/* Command line and stop-signal helpers shared by the echo test servers (C and C++). */
#ifndef ECHO_SERVERS_COMMON_H
#define ECHO_SERVERS_COMMON_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses `--port N` (required) and `--threads N` (optional, left untouched
   when absent); prints usage and exits on anything else. */
static inline void parse_args(int argc, char** argv, int* port, int* threads) {
  *port = -1;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--port") == 0) {
      *port = atoi(argv[++i]);
    } else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) {
      *threads = atoi(argv[++i]);
    } else {
      *port = -1;
      break;
    }
  }
  if (*port < 0 || *port > 65535 || *threads < 1) {
    fprintf(stderr, "usage: %s --port N [--threads N]\n", argv[0]);
    exit(2);
  }
}

/* Blocks SIGINT and SIGTERM in the calling thread and in every thread it
   creates later (call it first in main); wait for them with sigwait. */
static inline void block_stop_signals(sigset_t* set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* Prints the line test harnesses wait for. */
static inline void announce_ready(int port) {
  printf("READY %d\n", port);
  fflush(stdout);
}

#endif
