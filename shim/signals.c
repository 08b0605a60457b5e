/* signals.c: stands in for pthread_create and sigaction so that civetweb's
 * threads cannot change the host's SIGPIPE disposition. Every other call
 * passes straight through. Page threads block every signal, so a write to a
 * closed socket fails with EPIPE there and needs no process-wide SIG_IGN. */
#define _GNU_SOURCE
#include "signals.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#define EXPORT __attribute__((visibility("default")))

static __thread bool marking_new_threads;
static __thread bool in_page_thread;

struct page_thread_start {
    void *(*start)(void *);
    void *arg;
};

void signals_mark_new_threads(bool on)
{
    marking_new_threads = on;
}

static void *page_thread_main(void *p)
{
    struct page_thread_start start = *(struct page_thread_start *)p;
    free(p);
    in_page_thread = true;
    return start.start(start.arg);
}

static int (*real_pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

/* Resolved before main, so no hook ever calls dlsym (not async-signal-safe)
 * from a signal handler or an allocator. */
__attribute__((constructor)) static void resolve_thread_and_signal_functions(void)
{
    *(void **)&real_pthread_create = dlsym(RTLD_NEXT, "pthread_create");
    *(void **)&real_sigaction = dlsym(RTLD_NEXT, "sigaction");
}

EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*start)(void *),
                          void *arg)
{
    if (real_pthread_create == NULL)
        resolve_thread_and_signal_functions();
    if (!marking_new_threads)
        return real_pthread_create(thread, attr, start, arg);
    struct page_thread_start *p = malloc(sizeof(*p));
    if (p == NULL)
        return EAGAIN;
    p->start = start;
    p->arg = arg;
    int rc = real_pthread_create(thread, attr, page_thread_main, p);
    if (rc != 0)
        free(p);
    return rc;
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    if (real_sigaction == NULL)
        resolve_thread_and_signal_functions();
    if (in_page_thread && sig == SIGPIPE && act != NULL)
        return real_sigaction(sig, NULL, old);
    return real_sigaction(sig, act, old);
}
