/* page.c: serves the region as the Prometheus page /metrics over HTTP or
 * HTTPS, gzip-compressed for clients that accept it, from one thread of ours
 * driving libmicrohttpd and zlib, which are loaded only then. */
#include "page.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#define ZLIB_CONST
#include <zlib.h>

#include "encoding.h"
#include "log.h"
#include "process.h"
#include "render.h"
#include "tls_files.h"

enum {
    REQUEST_MS = 2000,      /* from accept until the request head is in */
    TOTAL_MS = 10000,       /* from accept until close, answer included */
    CROWDED_REQUEST_MS = 100, /* REQUEST_MS while fewer than 1/8 of the slots are free */
    IDLE_S = 5,             /* libmicrohttpd's own inactivity timeout, a backstop */
    MEMORY_LIMIT = 16384,   /* per connection: longer URLs get 414, headers 431 */
    MAX_CONNECTIONS = 512,  /* and at most a quarter of the fd limit */
    RETRY_BIND_MS = 2000,
    MAX_WAIT_MS = 1000,
    PAGE_FRESH_MS = 100,    /* requests this close to a rendering share it */
    PAGE_COPIES = 8,        /* pages alive at once (plain or gzip), held by slow readers */
    GZIP_LEVEL = 1,         /* 1,000 methods: 4 MB to 115 KB in 5 ms; level 6: 99 KB in 13 ms */
    ACCEPT_BATCH = 16,
    OUT_OF_FDS_PAUSE_MS = 100,
    CERT_CHECK_MS = 5000,   /* how soon a renewed certificate is served */
    EXIT_WAIT_MS = 50,      /* at most this long at exit for the page to stop */
};

/* TLS 1.2 and 1.3 only, as Prometheus asks by default. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* The libmicrohttpd functions the page calls, resolved when the page starts:
 * the shim links none of it, so a process that never serves gRPC loads none. */
#define MHD_FUNCTIONS(X)                                                               \
    X(MHD_start_daemon) X(MHD_run) X(MHD_get_timeout) X(MHD_get_daemon_info)           \
    X(MHD_add_connection) X(MHD_get_connection_info) X(MHD_create_response_from_buffer) \
    X(MHD_create_response_from_buffer_with_free_callback)                              \
    X(MHD_add_response_header) X(MHD_queue_response) X(MHD_destroy_response)         \
    X(MHD_lookup_connection_value) X(MHD_set_panic_func) X(MHD_stop_daemon)            \
    X(MHD_is_feature_supported) X(MHD_get_connection_values)
#define DECLARE_FUNCTION(name) __typeof__(name) *name;
static struct {
    MHD_FUNCTIONS(DECLARE_FUNCTION)
} mhd;

/* zlib's functions, resolved when the page starts: the shim links none of
 * it. Without them (gzip_ready false) the page is served plain. */
#define ZLIB_FUNCTIONS(X) X(deflateInit2_) X(deflate) X(deflateEnd) X(deflateBound)
static struct {
    ZLIB_FUNCTIONS(DECLARE_FUNCTION)
} z;
static bool gzip_ready;

/* A connection libmicrohttpd serves, in a list in accept order. */
struct conn {
    struct conn *prev, *next;
    int fd;
    int64_t accepted_ms;
    bool requested;   /* its request head arrived */
    bool closing;     /* shut down by the sweep; libmicrohttpd closes it next */
};

static const struct grpcprom_header *page_region;
static struct page_owner page_owner;       /* the host's callbacks, if any */
static struct access_list allow;
static bool credentials_required;     /* a credentials file was named */
static struct access_users *users;    /* NULL: none loaded */
static char *token;                   /* NULL: none loaded */
static char page_listen[64];
static struct sockaddr_in page_addr;
/* The daemon that takes new connections (NULL while TLS is wanted and no
 * certificate is usable: connections are then closed), and the one it
 * replaced when the certificate was renewed, serving its last connections. */
static struct MHD_Daemon *page_daemon, *retiring;
static int64_t retiring_since;
static struct tls_files tls;         /* paths NULL: no certificate to watch */
static char last_http_message[256];  /* libmicrohttpd's latest, for our own errors */
/* Exit: the host's atexit sets `stopping` and wakes the thread, which parks. */
static bool page_running;
static atomic_bool stopping, parked;
static int wake_fd = -1;
static struct conn *oldest, *newest;
static __thread bool on_page_thread;
static unsigned conns, closing_conns; /* in the list; of which closing */
static unsigned max_conns;
/* The listening socket, ours alone (libmicrohttpd only gets accepted ones).
 * Created under the lock, which fork also takes, so a child always knows it. */
static pthread_mutex_t listen_lock = PTHREAD_MUTEX_INITIALIZER;
static int listen_fd = -1;

/* Deadlines follow the monotonic clock: a step of the wall clock must not
 * cut or stretch them. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libmicrohttpd's messages are mostly about single clients (one cut off, a
 * bad request): at info level, and each kind (format) once, so that many
 * clients cannot flood stderr. */
static void log_http(void *cls, const char *fmt, va_list ap)
{
    static const char *said[32];
    (void)cls;
    va_list copy;
    va_copy(copy, ap);
    vsnprintf(last_http_message, sizeof(last_http_message), fmt, copy);
    va_end(copy);
    last_http_message[strcspn(last_http_message, "\n")] = '\0';
    size_t i = 0;
    while (i < sizeof(said) / sizeof(said[0]) && said[i] != NULL && said[i] != fmt)
        i++;
    if (i == sizeof(said) / sizeof(said[0]) || said[i] == fmt)
        return;
    said[i] = fmt;
    log_msg(LOG_INFO, "http: %s", last_http_message);
}

/* A short text/plain answer for anything but the page itself. */
static struct MHD_Response *plain_text(const char *body)
{
    struct MHD_Response *r =
        mhd.MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r != NULL)
        mhd.MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    return r;
}

/* The newest rendering, shared by the requests within PAGE_FRESH_MS of it:
 * our references to its plain response and, once a client asked for it, its
 * gzip variant, and its text (alive while we hold newest_page). */
static struct MHD_Response *newest_page, *newest_gzip;
static const char *newest_text;
static size_t newest_len;
static int64_t newest_page_ms;
static unsigned page_copies; /* plain and gzip buffers not yet freed */

static void free_page(void *data)
{
    free(data);
    page_copies--;
}

/* A page response owning `data` (freed, and uncounted, once no connection
 * and no reference of ours holds it). NULL on failure: data is the
 * caller's again. */
static struct MHD_Response *page_buffer_response(char *data, size_t len, bool gzip)
{
    struct MHD_Response *r =
        mhd.MHD_create_response_from_buffer_with_free_callback(len, data, free_page);
    if (r == NULL)
        return NULL;
    page_copies++;
    mhd.MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    if (gzip)
        mhd.MHD_add_response_header(r, "Content-Encoding", "gzip");
    mhd.MHD_add_response_header(r, "Vary", "Accept-Encoding");
    mhd.MHD_add_response_header(r, "Cache-Control", "no-store");
    mhd.MHD_add_response_header(r, "Connection", "close");
    return r;
}

/* Renders the region as the newest page, dropping our references to the
 * last one; keeps the last when out of memory. */
static void render_page(int64_t now)
{
    struct grpcprom_buf page = {0};
    struct MHD_Response *r = NULL;
    if (grpcprom_render(page_region, &page) == 0 && process_render(&page) == 0)
        r = page_buffer_response(page.data, page.len, false);
    if (r == NULL) {
        grpcprom_buf_free(&page);
        return;
    }
    if (newest_page)
        mhd.MHD_destroy_response(newest_page); /* freed once no connection holds it */
    if (newest_gzip)
        mhd.MHD_destroy_response(newest_gzip);
    newest_page = r;
    newest_gzip = NULL;
    newest_text = page.data;
    newest_len = page.len;
    newest_page_ms = now;
}

/* The newest page compressed, in one deflate call on the page's thread (a
 * single gzip member, GZIP_LEVEL). NULL when out of memory. */
static struct MHD_Response *compress_page(void)
{
    z_stream s = {0};
    if (newest_len > UINT_MAX ||
        z.deflateInit2_(&s, GZIP_LEVEL, Z_DEFLATED, 15 + 16 /* gzip wrapper */, 8,
                        Z_DEFAULT_STRATEGY, ZLIB_VERSION, (int)sizeof(s)) != Z_OK)
        return NULL;
    uLong bound = z.deflateBound(&s, newest_len); /* untouched pages of it cost nothing */
    char *out = bound <= UINT_MAX ? malloc(bound) : NULL;
    int rc = Z_MEM_ERROR;
    if (out != NULL) {
        s.next_in = (const Bytef *)newest_text;
        s.avail_in = (uInt)newest_len;
        s.next_out = (Bytef *)out;
        s.avail_out = (uInt)bound;
        rc = z.deflate(&s, Z_FINISH);
    }
    size_t len = s.total_out;
    z.deflateEnd(&s);
    struct MHD_Response *r = NULL;
    if (rc == Z_STREAM_END) {
        char *shrunk = realloc(out, len);
        out = shrunk ? shrunk : out;
        r = page_buffer_response(out, len, true);
    }
    if (r == NULL)
        free(out);
    return r;
}

/* The page, as one response that requests share: a flood of requests
 * renders (and compresses) at most one page per PAGE_FRESH_MS, and clients
 * that never read hold shared copies, at most PAGE_COPIES of them, gzip ones
 * included (then the newest is served, a little older, or plain when its
 * gzip variant has no room). NULL only when no page could ever be made. */
static struct MHD_Response *page_response(bool gzip)
{
    int64_t now = now_ms();
    if (newest_page == NULL || (now - newest_page_ms >= PAGE_FRESH_MS && page_copies < PAGE_COPIES))
        render_page(now);
    if (gzip && newest_page != NULL && newest_gzip == NULL && page_copies < PAGE_COPIES)
        newest_gzip = compress_page();
    return gzip && newest_gzip != NULL ? newest_gzip : newest_page;
}

/* Called by libmicrohttpd for each request header: Accept-Encoding may come
 * in several headers. */
static enum MHD_Result fold_accept_encoding(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value)
{
    (void)kind;
    if (key != NULL && value != NULL && strcasecmp(key, "Accept-Encoding") == 0)
        encoding_fold(value, cls);
    return MHD_YES;
}

/* Whether to answer gzip, from every Accept-Encoding header of the request. */
static bool wants_gzip(struct MHD_Connection *c)
{
    struct codings w = CODINGS_NONE;
    mhd.MHD_get_connection_values(c, MHD_HEADER_KIND, fold_accept_encoding, &w);
    return encoding_wants_gzip(&w);
}

/* Answers every request in its first call, before any body is read (which
 * libmicrohttpd then discards, closing the connection): GET or HEAD /metrics
 * gets the page, other paths 404, other methods 405. Nothing comes from disk. */
static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    (void)cls, (void)version, (void)upload_data, (void)upload_data_size, (void)req_cls;
    const union MHD_ConnectionInfo *info =
        mhd.MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (info != NULL && info->socket_context != NULL)
        ((struct conn *)info->socket_context)->requested = true;

    struct MHD_Response *r;
    unsigned status;
    if (credentials_required &&
        !access_authorized(users, token,
                           mhd.MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"))) {
        status = MHD_HTTP_UNAUTHORIZED;
        r = plain_text("Unauthorized\n");
        if (r != NULL && users != NULL)
            mhd.MHD_add_response_header(r, "WWW-Authenticate", "Basic realm=\"grpcprom\", charset=\"UTF-8\"");
        if (r != NULL && token != NULL)
            mhd.MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"grpcprom\"");
    } else if (strcmp(url, "/metrics") != 0) {
        status = MHD_HTTP_NOT_FOUND;
        r = plain_text("Not found: the metrics are at /metrics\n");
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        r = plain_text("Method not allowed\n");
        if (r != NULL)
            mhd.MHD_add_response_header(r, "Allow", "GET, HEAD");
    } else {
        /* HEAD gets the same headers and Content-Length; libmicrohttpd
         * leaves the body out. */
        r = page_response(gzip_ready && wants_gzip(c));
        return r ? mhd.MHD_queue_response(c, MHD_HTTP_OK, r) : MHD_NO;
    }
    if (r == NULL)
        return MHD_NO; /* out of memory: libmicrohttpd closes the connection */
    mhd.MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result queued = mhd.MHD_queue_response(c, status, r);
    mhd.MHD_destroy_response(r);
    return queued;
}

/* Keeps the list of connections the sweep watches: added when libmicrohttpd
 * takes one, removed just before it closes the socket. */
static void track(void *cls, struct MHD_Connection *c, void **socket_context,
                  enum MHD_ConnectionNotificationCode event)
{
    (void)cls;
    struct conn *t = *socket_context;
    if (event == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            mhd.MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (info == NULL)
            return;
        t = calloc(1, sizeof(*t));
        if (t == NULL) { /* no deadline could be kept for it */
            shutdown(info->connect_fd, SHUT_RDWR);
            return;
        }
        t->fd = info->connect_fd;
        t->accepted_ms = now_ms();
        t->prev = newest;
        *(newest ? &newest->next : &oldest) = t;
        newest = t;
        conns++;
        *socket_context = t;
    } else if (event == MHD_CONNECTION_NOTIFY_CLOSED && t != NULL) {
        *(t->prev ? &t->prev->next : &oldest) = t->next;
        *(t->next ? &t->next->prev : &newest) = t->prev;
        conns--;
        closing_conns -= t->closing;
        free(t);
        *socket_context = NULL;
    }
}

/* Deadlines are totals, not per read: a request head must be in within
 * REQUEST_MS of accept and the connection is over after TOTAL_MS, however
 * slowly bytes trickle. While the page is nearly full, the oldest connections
 * without a request get only CROWDED_REQUEST_MS, so more idle clients than
 * slots keep a scrape out briefly, at a bounded cost in reconnections. Shutting
 * a socket down makes libmicrohttpd see its end and close it. Returns the
 * milliseconds until the next deadline, at most MAX_WAIT_MS. */
static int sweep(int64_t now)
{
    int64_t wait = MAX_WAIT_MS;
    for (struct conn *t = oldest; t != NULL; t = t->next) {
        if (t->closing)
            continue;
        bool crowded = conns - closing_conns > max_conns - max_conns / 8;
        int64_t left = (t->requested ? TOTAL_MS : crowded ? CROWDED_REQUEST_MS : REQUEST_MS) -
                       (now - t->accepted_ms);
        if (left <= 0) {
            shutdown(t->fd, SHUT_RDWR);
            t->closing = true;
            closing_conns++;
        } else if (left < wait) {
            wait = left;
        }
    }
    return (int)wait;
}

/* Opens the listening socket; 0 or an errno value. Under the lock that fork
 * takes, so a child never gets a socket it does not know to close. */
static int listen_on_page_address(void)
{
    pthread_mutex_lock(&listen_lock);
    int err = 0, one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)&page_addr, sizeof(page_addr)) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
        err = errno;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    listen_fd = fd;
    pthread_mutex_unlock(&listen_lock);
    if (err == 0) {
        log_msg(LOG_INFO, "metrics page on http://%s/metrics", page_listen);
        if (page_owner.bound)
            page_owner.bound(page_listen);
    }
    return err;
}

/* Hands waiting connections to libmicrohttpd, a batch at a time so that the
 * sweep runs between batches, and only as many as it has room for (the rest
 * wait in the backlog rather than be closed). false when the process is out
 * of fds or memory: the caller then pauses accepting instead of spinning. */
static bool accept_new(void)
{
    for (int i = 0; i < ACCEPT_BATCH && conns < max_conns; i++) {
        struct sockaddr_in addr;
        socklen_t len = sizeof(addr);
        int fd = accept4(listen_fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return !(errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM);
        if (page_daemon == NULL || !access_list_allows(&allow, ntohl(addr.sin_addr.s_addr))) {
            close(fd); /* refused before a byte of it is read */
            continue;
        }
        mhd.MHD_add_connection(page_daemon, fd, (struct sockaddr *)&addr, len); /* closes fd on failure */
    }
    return true;
}

/* A libmicrohttpd daemon in external epoll mode, given accepted sockets
 * only: it starts no thread and never calls sigaction. With a certificate
 * and key (PEM, copied by the library), it speaks TLS. NULL on failure. */
static struct MHD_Daemon *start_daemon(const char *cert, const char *key)
{
    struct MHD_OptionItem tls_options[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TLS_PRIORITIES},
        {MHD_OPTION_END, 0, NULL},
    };
    last_http_message[0] = '\0';
    return mhd.MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ERROR_LOG | (cert ? MHD_USE_TLS : 0),
        0, NULL, NULL, answer, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, log_http, NULL, /* first, or messages about the rest go to stderr */
        MHD_OPTION_CONNECTION_LIMIT, max_conns,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MEMORY_LIMIT,
        MHD_OPTION_NOTIFY_CONNECTION, track, NULL,
        MHD_OPTION_ARRAY, cert ? tls_options : tls_options + 3,
        MHD_OPTION_END);
}

/* Reads the certificate and key again when their files changed: a usable
 * pair gets a new daemon for new connections, and the one before serves its
 * open connections out. A pair that cannot be used is said once; the page
 * keeps the certificate it had, or with none yet closes every connection. */
static void reload_certificate(int64_t now)
{
    char *cert = NULL, *key = NULL;
    const char *why = NULL;
    enum tls_files_state state = tls_files_check(&tls, &cert, &key, &why);
    if (state == TLS_FILES_UNCHANGED)
        return;
    struct MHD_Daemon *d = NULL;
    if (state == TLS_FILES_CHANGED) {
        d = start_daemon(cert, key);
        why = last_http_message[0] ? last_http_message : "libmicrohttpd refused them";
        free(cert);
        explicit_bzero(key, strlen(key));
        free(key);
    }
    if (d == NULL) {
        log_msg(LOG_ERROR, "GRPCPROM_TLS_CERT=\"%.100s\", GRPCPROM_TLS_KEY=\"%.100s\": %s; %s",
                tls.cert_path, tls.key_path, why,
                page_daemon ? "the page keeps the certificate it had"
                            : "the page closes every connection until they are fixed");
        return;
    }
    if (retiring != NULL)
        mhd.MHD_stop_daemon(retiring); /* renewed twice within TOTAL_MS: its clients reconnect */
    if (page_daemon != NULL)
        log_msg(LOG_INFO, "the metrics page serves the renewed certificate");
    retiring = page_daemon;
    retiring_since = now;
    page_daemon = d;
}

/* The daemon replaced by a renewed certificate stops once its connections
 * are done, which the sweep bounds by TOTAL_MS. */
static void stop_retired(int64_t now)
{
    if (retiring == NULL)
        return;
    const union MHD_DaemonInfo *info =
        mhd.MHD_get_daemon_info(retiring, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    if ((info != NULL && info->num_connections == 0) || now - retiring_since > TOTAL_MS) {
        mhd.MHD_stop_daemon(retiring);
        retiring = NULL;
    }
}

/* Lowers *wait to a daemon's own next timeout. */
static void daemon_wait(struct MHD_Daemon *d, int *wait)
{
    MHD_UNSIGNED_LONG_LONG mhd_wait;
    if (d != NULL && mhd.MHD_get_timeout(d, &mhd_wait) == MHD_YES && mhd_wait < (unsigned)*wait)
        *wait = (int)mhd_wait;
}

static int daemon_epoll_fd(struct MHD_Daemon *d)
{
    return d ? mhd.MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd : -1;
}

/* The page thread: binds (retrying while the address is taken), then serves
 * until the host exits; every wait is at most MAX_WAIT_MS. At exit the
 * host's atexit calls stop_page, and the thread parks for good before the
 * host's earlier atexit handlers and the libraries' destructors (GnuTLS's
 * among them) run; the kernel ends it with the process. Until then it
 * touches only what nothing tears down: the region (mapped once, never
 * unmapped), its own heap, and libmicrohttpd's daemons. */
static void *serve(void *arg)
{
    (void)arg;
    on_page_thread = true;
    int64_t next_bind = now_ms() + RETRY_BIND_MS, accept_after = 0;
    int64_t next_cert_check = now_ms() + CERT_CHECK_MS;
    while (!atomic_load(&stopping)) {
        int64_t now = now_ms();
        if (listen_fd < 0 && now >= next_bind && listen_on_page_address() != 0)
            next_bind = now + RETRY_BIND_MS;
        if (tls.cert_path != NULL && now >= next_cert_check) {
            reload_certificate(now);
            next_cert_check = now + CERT_CHECK_MS;
        }
        stop_retired(now);
        int wait = sweep(now);
        if (listen_fd < 0 && next_bind - now < wait)
            wait = (int)(next_bind - now);
        daemon_wait(page_daemon, &wait);
        daemon_wait(retiring, &wait);
        if (listen_fd >= 0 && accept_after > now && accept_after - now < wait)
            wait = (int)(accept_after - now);
        bool accepting = listen_fd >= 0 && now >= accept_after && conns < max_conns;
        struct pollfd fds[4] = {{daemon_epoll_fd(page_daemon), POLLIN, 0},
                                {daemon_epoll_fd(retiring), POLLIN, 0},
                                {accepting ? listen_fd : -1, POLLIN, 0},
                                {wake_fd, POLLIN, 0}};
        poll(fds, 4, wait);
        if (atomic_load(&stopping))
            break;
        if ((fds[2].revents & POLLIN) && !accept_new())
            accept_after = now_ms() + OUT_OF_FDS_PAUSE_MS;
        if (page_daemon != NULL)
            mhd.MHD_run(page_daemon);
        if (retiring != NULL)
            mhd.MHD_run(retiring);
    }
    atomic_store(&parked, true);
    for (;;)
        pause(); /* every signal it could take is blocked: it sleeps until the process ends */
    return NULL;
}

/* At the host's exit, before the atexit handlers registered earlier than
 * the page and before any library's destructor: the page thread stops
 * touching libmicrohttpd and GnuTLS. It waits at most EXIT_WAIT_MS. */
static void stop_page(void)
{
    if (!page_running)
        return;
    atomic_store(&stopping, true);
    eventfd_write(wake_fd, 1);
    for (int waited = 0; waited < EXIT_WAIT_MS && !atomic_load(&parked); waited++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
}

/* Around fork: the socket is never half made while a process forks. */
static void lock_listen(void)
{
    pthread_mutex_lock(&listen_lock);
}

static void unlock_listen(void)
{
    pthread_mutex_unlock(&listen_lock);
}

/* A forked child keeps no listening socket, or it would hold the port with
 * nobody serving once the parent is gone (the page thread is not in it). */
static void close_listen_in_child(void)
{
    page_running = false; /* no page thread here: nothing to stop at exit */
    if (listen_fd >= 0)
        close(listen_fd);
    listen_fd = -1;
    pthread_mutex_unlock(&listen_lock);
}

/* Loads libmicrohttpd; NULL or why not. It is never unloaded. */
static const char *load_libmicrohttpd(void)
{
    void *lib = dlopen("libmicrohttpd.so.12", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return dlerror();
#define RESOLVE_FUNCTION(name)                                 \
    if ((*(void **)&mhd.name = dlsym(lib, #name)) == NULL)     \
        return dlerror();
    MHD_FUNCTIONS(RESOLVE_FUNCTION)
    return NULL;
}

/* Loads zlib, for gzip answers; NULL or why not. It is never unloaded (a
 * gRPC server has it loaded anyway: libgrpc links it). */
static const char *load_zlib(void)
{
    void *lib = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return dlerror();
#define RESOLVE_ZLIB_FUNCTION(name)                        \
    if ((*(void **)&z.name = dlsym(lib, #name)) == NULL) \
        return dlerror();
    ZLIB_FUNCTIONS(RESOLVE_ZLIB_FUNCTION)
    return NULL;
}

/* Loads the credentials the settings name. A file that cannot be loaded
 * leaves the page refusing every request: it was meant to be closed. */
static void load_credentials(const struct page_access *access)
{
    const char *basic = access->basic_auth_file, *bearer = access->bearer_token_file;
    const char *why;
    if (basic && basic[0] && (why = access_load_users(basic, &users)) != NULL)
        log_msg(LOG_ERROR, "GRPCPROM_BASIC_AUTH_FILE=\"%.100s\": %s; the page refuses every "
                           "request until it is fixed", basic, why);
    if (bearer && bearer[0] && (why = access_load_token(bearer, &token)) != NULL)
        log_msg(LOG_ERROR, "GRPCPROM_BEARER_TOKEN_FILE=\"%.100s\": %s; the page refuses every "
                           "request until it is fixed", bearer, why);
    credentials_required = (basic && basic[0]) || (bearer && bearer[0]);
}

/* libmicrohttpd calls this for states it cannot go on from (a socket it
 * cannot close, say, because host code closed it): on the page's thread the
 * page ends and the host runs on; elsewhere (never, as only that thread
 * calls the library) it aborts, as the library would. It must not return. */
static void page_panic(void *cls, const char *file, unsigned int line, const char *reason)
{
    (void)cls;
    log_msg(LOG_ERROR, "the metrics page stops: libmicrohttpd failed at %s:%u (%s)",
            file ? file : "?", line, reason ? reason : "?");
    if (on_page_thread)
        pthread_exit(NULL);
    abort();
}

/* The first daemon: plain HTTP, or HTTPS with the named certificate and
 * key. false only when the page cannot run at all. A TLS setting that
 * cannot be used never falls back to plain HTTP, which would show the page
 * and the credentials to anyone on the path: connections are closed. */
static bool start_first_daemon(const struct page_access *access)
{
    const char *cert = access->tls_cert_file, *key = access->tls_key_file;
    bool has_cert = cert && cert[0], has_key = key && key[0];
    if (!has_cert && !has_key) {
        page_daemon = start_daemon(NULL, NULL);
        if (page_daemon == NULL)
            log_msg(LOG_ERROR, "cannot start libmicrohttpd (%s); the server runs on without a "
                               "metrics page", last_http_message);
        return page_daemon != NULL;
    }
    if (!has_cert || !has_key)
        log_msg(LOG_ERROR, "%s is set without %s; the page closes every connection",
                has_cert ? "GRPCPROM_TLS_CERT" : "GRPCPROM_TLS_KEY",
                has_cert ? "GRPCPROM_TLS_KEY" : "GRPCPROM_TLS_CERT");
    else if (mhd.MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        log_msg(LOG_ERROR, "GRPCPROM_TLS_CERT is set but this libmicrohttpd has no TLS; the page "
                           "closes every connection");
    else {
        tls.cert_path = cert;
        tls.key_path = key;
        reload_certificate(now_ms());
    }
    return true;
}

/* Called once, when the process starts its first gRPC server: failures
 * only cost the page, never the server. */
int page_start(const char *listen, const struct grpcprom_header *region,
               const struct page_access *access, const struct page_owner *owner)
{
    page_region = region;
    if (owner)
        page_owner = *owner;
    allow = access->allow;
    if (access->refuse_everyone)
        access_parse_list("-0.0.0.0/0", &allow);
    load_credentials(access);
    snprintf(page_listen, sizeof(page_listen), "%s", listen);
    char *colon = strrchr(page_listen, ':');
    page_addr.sin_family = AF_INET;
    page_addr.sin_port = htons((uint16_t)atoi(colon + 1));
    *colon = '\0';
    inet_pton(AF_INET, page_listen, &page_addr.sin_addr);
    *colon = ':';

    const char *why = load_libmicrohttpd();
    if (why != NULL) {
        log_msg(LOG_ERROR, "cannot load libmicrohttpd (%s); the server runs on without a metrics page",
                why);
        return -1;
    }
    mhd.MHD_set_panic_func(page_panic, NULL); /* libmicrohttpd's alone: only the page uses it */
    why = load_zlib();
    gzip_ready = why == NULL;
    if (!gzip_ready)
        log_msg(LOG_WARN, "cannot load zlib (%s); the metrics page is served uncompressed", why);
    struct rlimit files;
    max_conns = MAX_CONNECTIONS;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur / 4 < max_conns)
        max_conns = files.rlim_cur / 4 > 8 ? (unsigned)(files.rlim_cur / 4) : 8;
    if (!start_first_daemon(access))
        return -1;

    pthread_atfork(lock_listen, unlock_listen, close_listen_in_child);
    int err = listen_on_page_address();
    bool expected = false;
    const char *hint = err == EADDRINUSE && page_owner.why_taken
                           ? page_owner.why_taken(page_listen, &expected) : NULL;
    if (err != 0)
        log_msg(expected ? LOG_INFO : LOG_WARN, "cannot serve the metrics page on %s (%s%s%s); "
                "counting goes on and the page is served once the address is free (trying every "
                "2 s)", page_listen, strerror(err), hint ? ": " : "", hint ? hint : "");

    /* The host's signals go to the host's threads. A fault of our own must
     * still reach the host's handlers (a blocked SIGSEGV kills outright). */
    sigset_t all;
    sigfillset(&all);
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
    for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
        sigdelset(&all, faults[i]);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setsigmask_np(&attr, &all);
    wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, serve, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        log_msg(LOG_ERROR, "cannot start the metrics page's thread (%s); the server runs on "
                           "without it", strerror(rc));
        lock_listen();
        if (listen_fd >= 0)
            close(listen_fd);
        listen_fd = -1;
        unlock_listen();
        return -1;
    }
    page_running = true;
    atexit(stop_page);
    return 0;
}
