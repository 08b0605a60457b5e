/* page.c: answers every HTTP request itself, before civetweb would look at a
 * file: GET or HEAD /metrics gets the page, other paths 404, other methods
 * 405. Civetweb's threads never receive the host's signals. */
#include "page.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "render.h"
#include "signals.h"

static const struct grpcprom_header *page_region;

static void send_plain(struct mg_connection *conn, int status, const char *reason,
                       const char *extra_header, const char *body)
{
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
              "Content-Length: %zu\r\n%sConnection: close\r\n\r\n%s",
              status, reason, strlen(body), extra_header, body);
}

static int handle_request(struct mg_connection *conn)
{
    const struct mg_request_info *req = mg_get_request_info(conn);
    if (strcmp(req->local_uri, "/metrics") != 0) {
        send_plain(conn, 404, "Not Found", "", "Not found: the metrics are at /metrics\n");
        return 404;
    }
    bool head = strcmp(req->request_method, "HEAD") == 0;
    if (!head && strcmp(req->request_method, "GET") != 0) {
        send_plain(conn, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
                   "Method not allowed\n");
        return 405;
    }
    struct grpcprom_buf page = {0};
    if (grpcprom_render(page_region, &page) != 0) {
        grpcprom_buf_free(&page);
        send_plain(conn, 500, "Internal Server Error", "", "Out of memory\n");
        return 500;
    }
    mg_printf(conn,
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
              "Content-Length: %zu\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
              page.len);
    if (!head)
        mg_write(conn, page.data, page.len);
    grpcprom_buf_free(&page);
    return 200;
}

/* The page's listening socket: a forked child must not keep it open, or it
 * would hold the port with nobody serving once the parent is gone. */
static int listen_fd = -1;

/* Finds the socket civetweb listens on: a listening TCP socket of this
 * process bound to `port`. -1 when there is none. */
static int find_listen_fd(int port)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return -1;
    int found = -1;
    for (struct dirent *d; found < 0 && (d = readdir(dir)) != NULL;) {
        int fd = atoi(d->d_name);
        int listening = 0;
        socklen_t len = sizeof(listening);
        struct sockaddr_in addr;
        socklen_t addr_len = sizeof(addr);
        if (d->d_name[0] >= '0' && d->d_name[0] <= '9' &&
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening &&
            getsockname(fd, (struct sockaddr *)&addr, &addr_len) == 0 && addr.sin_family == AF_INET &&
            ntohs(addr.sin_port) == port)
            found = fd;
    }
    closedir(dir);
    return found;
}

static void close_page_in_child(void)
{
    if (listen_fd >= 0)
        close(listen_fd);
    listen_fd = -1;
}

static int log_civetweb(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    log_msg(LOG_INFO, "http: %s", message);
    return 1;
}

int page_start(const char *listen, const struct grpcprom_header *region)
{
    page_region = region;
    const char *settings[] = {
        "listening_ports", listen,
        "num_threads", "2",
        "request_timeout_ms", "5000",
        "enable_keep_alive", "no",
        NULL,
    };
    struct mg_callbacks callbacks;
    memset(&callbacks, 0, sizeof(callbacks));
    callbacks.begin_request = handle_request;
    callbacks.log_message = log_civetweb;

    /* Civetweb's threads inherit this mask, so the host's signals go to the
     * host's threads; and they may not change the host's SIGPIPE. */
    sigset_t all, saved_mask;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved_mask);
    signals_mark_new_threads(true);
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&callbacks, NULL, settings);
    signals_mark_new_threads(false);
    pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
    if (ctx == NULL) {
        log_msg(LOG_ERROR, "cannot serve the metrics page on %s (is the port in use?); "
                           "the server runs on without it", listen);
        return -1;
    }
    listen_fd = find_listen_fd(atoi(strrchr(listen, ':') + 1));
    pthread_atfork(NULL, NULL, close_page_in_child);
    log_msg(LOG_INFO, "metrics page on http://%s/metrics", listen);
    return 0;
}
