/* test_render.c: checks the page rendered from hand-built regions, line by line against go-grpc-prometheus. */
#include "check.h"
#include "region.h"
#include "../region_counts.h"
#include "render.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#define RELAXED memory_order_relaxed

/* A zeroed region with DefBuckets, filled in as the creator would. */
static struct grpcprom_header *make_region(uint32_t capacity, uint32_t bucket_count)
{
    static const double def_buckets[] = {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
    struct grpcprom_header plan = {0};
    size_t size = grpcprom_region_plan(&plan, capacity, bucket_count, 4);
    struct grpcprom_header *h = aligned_alloc(64, size);
    if (!h)
        abort();
    memset(h, 0, size);
    memcpy(h, &plan, sizeof(plan));
    h->layout_version = GRPCPROM_LAYOUT_VERSION;
    h->bucket_count = bucket_count;
    for (uint32_t i = 0; i < bucket_count && i < 11; i++) {
        h->bucket_bounds[i] = def_buckets[i];
        h->bucket_bounds_ns[i] = (uint64_t)(def_buckets[i] * 1e9 + 0.5);
    }
    memcpy(h->magic, GRPCPROM_MAGIC, sizeof(h->magic));
    CHECK_INT(grpcprom_region_check(h, size), 0);
    return h;
}

/* Fills slot i (the slots up to it count as handed out); a path longer
 * than the field is cut, as a corrupt region could have it. */
static struct grpcprom_method *add_slot(struct grpcprom_header *h, uint32_t i, const char *path,
                                        uint32_t type_bits, uint32_t state)
{
    struct grpcprom_method *m = &grpcprom_region_methods(h)[i];
    size_t n = strlen(path);
    m->path_len = (uint32_t)(n < GRPCPROM_PATH_MAX ? n : GRPCPROM_PATH_MAX);
    memcpy(m->path, path, m->path_len);
    if (i < h->method_capacity && atomic_load(&h->methods_used) <= i)
        atomic_store(&h->methods_used, i + 1);
    atomic_store_explicit(&m->type_bits, type_bits, RELAXED);
    atomic_store_explicit(&m->state, state, memory_order_release);
    return m;
}


/* The page as a malloc'd string; NULL if rendering failed. */
static char *render(const struct grpcprom_header *h)
{
    struct grpcprom_buf b = {0};
    int rc = grpcprom_render(h, &b);
    CHECK_INT(rc, 0);
    CHECK(b.data && strlen(b.data) == b.len);
    if (rc != 0)
        grpcprom_buf_free(&b);
    return b.data;
}

/* The 0-based line number of an exact line, or -1. */
static int line_no(const char *page, const char *line)
{
    size_t n = strlen(line);
    int no = 0;
    for (const char *p = page; *p; no++) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len == n && memcmp(p, line, n) == 0)
            return no;
        if (!nl)
            break;
        p = nl + 1;
    }
    return -1;
}

static int count_lines_starting(const char *page, const char *prefix)
{
    int count = 0;
    size_t n = strlen(prefix);
    for (const char *p = page; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, n) == 0)
            count++;
    return count;
}

#define CHECK_LINE(page, line)                                                    \
    do {                                                                          \
        if (line_no(page, line) < 0) {                                            \
            fprintf(stderr, "%s:%d: missing line: %s\n", __FILE__, __LINE__, line); \
            check_failures++;                                                     \
        }                                                                         \
    } while (0)

static void check_double(double v, const char *want)
{
    char got[32];
    grpcprom_format_double(got, v);
    CHECK_STR(got, want);
}

static void test_format_double(void)
{
    check_double(0.005, "0.005");
    check_double(0.1, "0.1");
    check_double(2.5, "2.5");
    check_double(10, "10");
    check_double(1e-05, "1e-05");
    check_double(0.3, "0.3");
    check_double(123456789, "1.23456789e+08");
    check_double(1.5e300, "1.5e+300");
    check_double(0.0123, "0.0123");
    check_double(1e6, "1e+06");
    check_double(123456, "123456");
    check_double(1e21, "1e+21");
    check_double(0.0001, "0.0001");
    check_double(0.00012345, "0.00012345");
    check_double(5e-324, "5e-324");
    check_double(DBL_MAX, "1.7976931348623157e+308");
    check_double(-2.5, "-2.5");
    check_double(1.0 / 3, "0.3333333333333333");
    volatile double a = 0.1, b = 0.2;
    check_double(a + b, "0.30000000000000004");
    check_double(0, "0");
    check_double(-0.0, "0");
    check_double(INFINITY, "+Inf");
    check_double(-INFINITY, "-Inf");
    check_double(NAN, "NaN");

    /* Every text parses back to its value. */
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double v;
        memcpy(&v, &x, sizeof(v));
        if (!isfinite(v))
            continue;
        char s[32];
        grpcprom_format_double(s, v);
        if (strtod(s, NULL) != v) {
            CHECK_STR(s, "(a text that parses back)");
            break;
        }
    }
}

/* The whole page, as client_golang 1.14 prints the same metrics (produced
 * with prometheus.NewConstMetric/NewConstHistogram and expfmt): a dynamic
 * unary method with counts, a registered bidi method at zero, a slot still
 * being set up and an empty one. */
static const char full_page[] =
    "# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.\n"
    "# TYPE grpc_server_handled_total counter\n"
    "grpc_server_handled_total{grpc_code=\"Aborted\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"AlreadyExists\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"DataLoss\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"DeadlineExceeded\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"FailedPrecondition\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"Internal\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"InvalidArgument\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"NotFound\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"NotFound\",grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\"} 1\n"
    "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\"} 2\n"
    "grpc_server_handled_total{grpc_code=\"OutOfRange\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"PermissionDenied\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"ResourceExhausted\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"Unauthenticated\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"Unimplemented\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handled_total{grpc_code=\"Unknown\",grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "# HELP grpc_server_handling_seconds Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.\n"
    "# TYPE grpc_server_handling_seconds histogram\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"0.005\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"0.01\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"0.025\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"0.05\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"0.1\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"0.25\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"0.5\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"1\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"2.5\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"5\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"10\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\",le=\"+Inf\"} 0\n"
    "grpc_server_handling_seconds_sum{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handling_seconds_count{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"0.005\"} 1\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"0.01\"} 1\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"0.025\"} 2\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"0.05\"} 2\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"0.1\"} 2\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"0.25\"} 2\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"0.5\"} 2\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"1\"} 2\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"2.5\"} 2\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"5\"} 2\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"10\"} 2\n"
    "grpc_server_handling_seconds_bucket{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\",le=\"+Inf\"} 3\n"
    "grpc_server_handling_seconds_sum{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\"} 0.0123\n"
    "grpc_server_handling_seconds_count{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\"} 3\n"
    "# HELP grpc_server_msg_received_total Total number of RPC stream messages received on the server.\n"
    "# TYPE grpc_server_msg_received_total counter\n"
    "grpc_server_msg_received_total{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_msg_received_total{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\"} 3\n"
    "# HELP grpc_server_msg_sent_total Total number of gRPC stream messages sent by the server.\n"
    "# TYPE grpc_server_msg_sent_total counter\n"
    "grpc_server_msg_sent_total{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_msg_sent_total{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\"} 2\n"
    "# HELP grpc_server_started_total Total number of RPCs started on the server.\n"
    "# TYPE grpc_server_started_total counter\n"
    "grpc_server_started_total{grpc_method=\"Bidi\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"bidi_stream\"} 0\n"
    "grpc_server_started_total{grpc_method=\"Unary\",grpc_service=\"grpcprom.test.Echo\",grpc_type=\"unary\"} 3\n"
    "# HELP grpcprom_build_info A metric with a constant '1' value labeled by the version of grpcprom, the version of the libgrpc core it counts and how it counts (internals or public_api).\n"
    "# TYPE grpcprom_build_info gauge\n"
    "grpcprom_build_info{grpc_version=\"29.0.0\",mode=\"internals\",version=\"" GRPCPROM_VERSION "\"} 1\n"
    "# HELP grpcprom_calls_untracked_total Calls the shim could not follow (call table full, a libgrpc layout it does not know, or calls the public-API mode cannot see).\n"
    "# TYPE grpcprom_calls_untracked_total counter\n"
    "grpcprom_calls_untracked_total 4\n"
    "# HELP grpcprom_overflow_calls_total Calls counted under grpc_service=\"_OTHER\" instead of a series of their own, by reason.\n"
    "# TYPE grpcprom_overflow_calls_total counter\n"
    "grpcprom_overflow_calls_total{reason=\"invalid_path\"} 5\n"
    "grpcprom_overflow_calls_total{reason=\"path_too_long\"} 0\n"
    "grpcprom_overflow_calls_total{reason=\"method_table_full\"} 1\n"
    "grpcprom_overflow_calls_total{reason=\"unanswered_path\"} 0\n"
    "grpcprom_overflow_calls_total{reason=\"client_method_table_full\"} 0\n"
    "# HELP grpcprom_unknown_method_calls_total Calls to methods the server does not serve (answered Unimplemented); not labelled by path, since clients choose paths.\n"
    "# TYPE grpcprom_unknown_method_calls_total counter\n"
    "grpcprom_unknown_method_calls_total 6\n";

/* The writers' texts in grpcprom_build_info: what cannot be a plain label
 * value (a quote, bytes being rewritten) is "unknown". */
static void test_build_info_texts(void)
{
    struct grpcprom_header *h = make_region(1, 11);
    memset(h->grpc_version, 'a', sizeof(h->grpc_version)); /* no NUL: as long as the field */
    snprintf(h->counting_mode, sizeof(h->counting_mode), "in\"ternals");
    struct grpcprom_buf out = {0};
    CHECK_INT(grpcprom_render(h, &out), 0);
    char want[128];
    snprintf(want, sizeof(want), "\ngrpcprom_build_info{grpc_version=\"%.*s\",mode=\"unknown\",",
             (int)sizeof(h->grpc_version), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CHECK(out.data && strstr(out.data, want) != NULL);
    grpcprom_buf_free(&out);
    free(h);
}

static void test_full_page(void)
{
    struct grpcprom_header *h = make_region(4, 11);
    snprintf(h->grpc_version, sizeof(h->grpc_version), "29.0.0");
    snprintf(h->counting_mode, sizeof(h->counting_mode), "internals");
    struct grpcprom_method *u = add_slot(h, 0, "/grpcprom.test.Echo/Unary", 0, GRPCPROM_SLOT_READY);
    SET(h, u, started, 3);
    SET(h, u, msg_received, 3);
    SET(h, u, msg_sent, 2);
    SET(h, u, handled[0], 2);
    SET(h, u, handled[5], 1);
    SET(h, u, latency_sum_us, 12300);
    SET(h, u, buckets[0], 1);
    SET(h, u, buckets[2], 1);
    SET(h, u, buckets[11], 1);
    add_slot(h, 1, "/grpcprom.test.Echo/Bidi",
             GRPCPROM_REGISTERED | GRPCPROM_TYPE_EXACT | GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS,
             GRPCPROM_SLOT_READY);
    struct grpcprom_method *hidden = add_slot(h, 2, "/grpcprom.test.Echo/Hidden", 0, GRPCPROM_SLOT_EMPTY);
    SET(h, hidden, started, 9);
    SET(h, hidden, handled[0], 9);
    SET(h, &grpcprom_region_methods(h)[3], started, 7); /* EMPTY slot */
    atomic_store_explicit(&h->calls_untracked, 4, memory_order_relaxed);
    atomic_store_explicit(&h->overflow_calls[GRPCPROM_OVERFLOW_INVALID_PATH], 5, memory_order_relaxed);
    atomic_store_explicit(&h->overflow_calls[GRPCPROM_OVERFLOW_TABLE_FULL], 1, memory_order_relaxed);
    atomic_store_explicit(&h->unknown_methods, 6, memory_order_relaxed);

    char *page = render(h);
    if (page) {
        CHECK_STR(page, full_page);
        CHECK(strstr(page, "Hidden") == NULL);
        CHECK(strstr(page, " 9\n") == NULL && strstr(page, " 7\n") == NULL);
    }
    free(page);
    free(h);
}

/* Families in name order, each with one HELP and one TYPE line even when it
 * has no samples. */
static void test_empty_region(void)
{
    struct grpcprom_header *h = make_region(2, 11);
    char *page = render(h);
    if (page)
        CHECK_STR(page,
                  "# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.\n"
                  "# TYPE grpc_server_handled_total counter\n"
                  "# HELP grpc_server_handling_seconds Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.\n"
                  "# TYPE grpc_server_handling_seconds histogram\n"
                  "# HELP grpc_server_msg_received_total Total number of RPC stream messages received on the server.\n"
                  "# TYPE grpc_server_msg_received_total counter\n"
                  "# HELP grpc_server_msg_sent_total Total number of gRPC stream messages sent by the server.\n"
                  "# TYPE grpc_server_msg_sent_total counter\n"
                  "# HELP grpc_server_started_total Total number of RPCs started on the server.\n"
                  "# TYPE grpc_server_started_total counter\n"
                  "# HELP grpcprom_build_info A metric with a constant '1' value labeled by the version of grpcprom, the version of the libgrpc core it counts and how it counts (internals or public_api).\n"
                  "# TYPE grpcprom_build_info gauge\n"
                  "grpcprom_build_info{grpc_version=\"unknown\",mode=\"unknown\",version=\"" GRPCPROM_VERSION "\"} 1\n"
                  "# HELP grpcprom_calls_untracked_total Calls the shim could not follow (call table full, a libgrpc layout it does not know, or calls the public-API mode cannot see).\n"
                  "# TYPE grpcprom_calls_untracked_total counter\n"
                  "grpcprom_calls_untracked_total 0\n"
                  "# HELP grpcprom_overflow_calls_total Calls counted under grpc_service=\"_OTHER\" instead of a series of their own, by reason.\n"
                  "# TYPE grpcprom_overflow_calls_total counter\n"
                  "grpcprom_overflow_calls_total{reason=\"invalid_path\"} 0\n"
                  "grpcprom_overflow_calls_total{reason=\"path_too_long\"} 0\n"
                  "grpcprom_overflow_calls_total{reason=\"method_table_full\"} 0\n"
                  "grpcprom_overflow_calls_total{reason=\"unanswered_path\"} 0\n"
                  "grpcprom_overflow_calls_total{reason=\"client_method_table_full\"} 0\n"
                  "# HELP grpcprom_unknown_method_calls_total Calls to methods the server does not serve (answered Unimplemented); not labelled by path, since clients choose paths.\n"
                  "# TYPE grpcprom_unknown_method_calls_total counter\n"
                  "grpcprom_unknown_method_calls_total 0\n");
    free(page);
    free(h);
}

#define STARTED(m, s) "grpc_server_started_total{grpc_method=\"" m "\",grpc_service=\"" s "\",grpc_type=\"unary\"} 1"
#define HANDLED(c, m, s, v) \
    "grpc_server_handled_total{grpc_code=\"" c "\",grpc_method=\"" m "\",grpc_service=\"" s "\",grpc_type=\"unary\"} " v

/* Series sort by label values in label-name order (grpc_code first for
 * handled, then method, service, type), bytewise, whatever the slot order. */
static void test_order(void)
{
    static const char *const paths[] = {"/b.Svc/Zed", "/b.Svc/Alpha", "/a.Svc/Zed", "/a.Svc/Alpha",
                                        "/a.Svc/alpha", "/a.Svc/AlphaBeta"};
    struct grpcprom_header *h = make_region(8, 11);
    struct grpcprom_method *m[6];
    for (uint32_t i = 0; i < 6; i++) {
        m[i] = add_slot(h, i + 1, paths[i], 0, GRPCPROM_SLOT_READY);
        SET(h, m[i], started, 1);
    }
    SET(h, m[2], handled[14], 1); /* a.Svc/Zed Unavailable */
    SET(h, m[2], handled[10], 1); /* a.Svc/Zed Aborted */
    SET(h, m[1], handled[0], 1);  /* b.Svc/Alpha OK */
    SET(h, m[1], handled[10], 2); /* b.Svc/Alpha Aborted */

    char *page = render(h);
    if (page) {
        const char *started[] = {STARTED("Alpha", "a.Svc"), STARTED("Alpha", "b.Svc"),
                                 STARTED("AlphaBeta", "a.Svc"), STARTED("Zed", "a.Svc"),
                                 STARTED("Zed", "b.Svc"), STARTED("alpha", "a.Svc")};
        int first = line_no(page, started[0]);
        CHECK(first >= 0);
        for (int i = 1; i < 6; i++)
            CHECK_INT(line_no(page, started[i]), first + i);

        /* Dynamic slots: only the codes seen. */
        CHECK_INT(count_lines_starting(page, "grpc_server_handled_total{"), 4);
        first = line_no(page, HANDLED("Aborted", "Alpha", "b.Svc", "2"));
        CHECK(first >= 0);
        CHECK_INT(line_no(page, HANDLED("Aborted", "Zed", "a.Svc", "1")), first + 1);
        CHECK_INT(line_no(page, HANDLED("OK", "Alpha", "b.Svc", "1")), first + 2);
        CHECK_INT(line_no(page, HANDLED("Unavailable", "Zed", "a.Svc", "1")), first + 3);
    }
    free(page);
    free(h);
}

/* A registered slot shows all 17 codes at zero, in code-name order. */
static void test_registered(void)
{
    struct grpcprom_header *h = make_region(2, 11);
    add_slot(h, 1, "/pkg.S/M", GRPCPROM_REGISTERED | GRPCPROM_TYPE_EXACT | GRPCPROM_SERVER_STREAMS,
             GRPCPROM_SLOT_READY);
    char *page = render(h);
    if (page) {
        CHECK_INT(count_lines_starting(page, "grpc_server_handled_total{"), GRPCPROM_CODES);
        int prev = -1;
        static const char *const sorted[GRPCPROM_CODES] = {
            "Aborted", "AlreadyExists", "Canceled", "DataLoss", "DeadlineExceeded",
            "FailedPrecondition", "Internal", "InvalidArgument", "NotFound", "OK", "OutOfRange",
            "PermissionDenied", "ResourceExhausted", "Unauthenticated", "Unavailable",
            "Unimplemented", "Unknown"};
        for (int c = 0; c < GRPCPROM_CODES; c++) {
            char line[256];
            snprintf(line, sizeof(line),
                     "grpc_server_handled_total{grpc_code=\"%s\",grpc_method=\"M\",grpc_service=\"pkg.S\","
                     "grpc_type=\"server_stream\"} 0",
                     sorted[c]);
            int no = line_no(page, line);
            CHECK(no > prev);
            prev = no;
        }
        CHECK_LINE(page, "grpc_server_started_total{grpc_method=\"M\",grpc_service=\"pkg.S\",grpc_type=\"server_stream\"} 0");
        CHECK_LINE(page, "grpc_server_msg_received_total{grpc_method=\"M\",grpc_service=\"pkg.S\",grpc_type=\"server_stream\"} 0");
        CHECK_LINE(page, "grpc_server_msg_sent_total{grpc_method=\"M\",grpc_service=\"pkg.S\",grpc_type=\"server_stream\"} 0");
        CHECK_LINE(page, "grpc_server_handling_seconds_count{grpc_method=\"M\",grpc_service=\"pkg.S\",grpc_type=\"server_stream\"} 0");
    }
    free(page);
    free(h);
}

/* Label values escape backslash, quote and newline; a path may fill its
 * field; the split is at the first '/' after the leading one, as
 * go-grpc-prometheus' splitMethodName; paths with no such '/' are
 * unknown/unknown, and merge into one series. A path that is no UTF-8 text
 * (which the shim never writes) is left off the page. */
static void test_labels(void)
{
    struct grpcprom_header *h = make_region(9, 11);
    add_slot(h, 0, "/we\"ird\\svc\n/Me\"th", 0, GRPCPROM_SLOT_READY);
    char full[GRPCPROM_PATH_MAX + 1];
    memset(full, 'b', GRPCPROM_PATH_MAX);
    full[GRPCPROM_PATH_MAX] = '\0';
    full[0] = '/';
    memset(full + 1, 'a', 100);
    full[101] = '/'; /* method: 922 'b's, up to the end of the field */
    add_slot(h, 1, full, 0, GRPCPROM_SLOT_READY);
    SET(h, add_slot(h, 2, "noslash", 0, GRPCPROM_SLOT_READY), started, 1);
    SET(h, add_slot(h, 3, "/other", 0, GRPCPROM_SLOT_READY), started, 2);
    add_slot(h, 4, "/a.b/c/D", 0, GRPCPROM_SLOT_READY);
    add_slot(h, 5, "//x", 0, GRPCPROM_SLOT_READY);
    add_slot(h, 6, "/gen.Svc/M\xff", 0, GRPCPROM_SLOT_READY);
    add_slot(h, 7, "/\xc3\xa9.S/\xe2\x82\xac", 0, GRPCPROM_SLOT_READY);

    char *page = render(h);
    if (page) {
        CHECK_LINE(page, "grpc_server_started_total{grpc_method=\"Me\\\"th\",grpc_service=\"we\\\"ird\\\\svc\\n\","
                         "grpc_type=\"unary\"} 0");
        char line[1200];
        snprintf(line, sizeof(line), "grpc_server_started_total{grpc_method=\"%.922s\",grpc_service=\"%.100s\","
                 "grpc_type=\"unary\"} 0", full + 102, full + 1);
        CHECK_LINE(page, line);
        CHECK_LINE(page, "grpc_server_started_total{grpc_method=\"unknown\",grpc_service=\"unknown\",grpc_type=\"unary\"} 3");
        CHECK_LINE(page, "grpc_server_started_total{grpc_method=\"c/D\",grpc_service=\"a.b\",grpc_type=\"unary\"} 0");
        CHECK_LINE(page, "grpc_server_started_total{grpc_method=\"x\",grpc_service=\"\",grpc_type=\"unary\"} 0");
        CHECK_LINE(page, "grpc_server_started_total{grpc_method=\"\xe2\x82\xac\",grpc_service=\"\xc3\xa9.S\",grpc_type=\"unary\"} 0");
        CHECK(strstr(page, "gen.Svc") == NULL);
        CHECK(grpcprom_label_text_ok(page, strlen(page)));
        CHECK_INT(count_lines_starting(page, "grpc_server_started_total{"), 6);
    }
    free(page);
    free(h);
}

/* The overflow slots sit after the method slots and show once used. */
static void test_overflow_slots(void)
{
    struct grpcprom_header *h = make_region(2, 11);
    add_slot(h, 0, "/s.S/M", 0, GRPCPROM_SLOT_READY);
    struct grpcprom_method *o = add_slot(h, h->method_capacity + 3, GRPCPROM_OVERFLOW_PATH,
                                         GRPCPROM_OVERFLOW | GRPCPROM_TYPE_EXACT |
                                             GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS,
                                         GRPCPROM_SLOT_READY);
    CHECK(o == grpcprom_region_overflow(h, GRPCPROM_SERVER, GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS));
    SET(h, o, started, 4);
    char *page = render(h);
    if (page) {
        CHECK_LINE(page, "grpc_server_started_total{grpc_method=\"_OTHER\",grpc_service=\"_OTHER\",grpc_type=\"bidi_stream\"} 4");
        CHECK_LINE(page, "grpc_server_started_total{grpc_method=\"M\",grpc_service=\"s.S\",grpc_type=\"unary\"} 0");
        CHECK_INT(count_lines_starting(page, "grpc_server_started_total{"), 2);
    }
    free(page);
    free(h);
}

/* Each combination of the streaming bits has its grpc_type. */
static void test_types(void)
{
    struct grpcprom_header *h = make_region(4, 11);
    add_slot(h, 0, "/s.S/U", GRPCPROM_TYPE_EXACT, GRPCPROM_SLOT_READY);
    add_slot(h, 1, "/s.S/C", GRPCPROM_CLIENT_STREAMS, GRPCPROM_SLOT_READY);
    add_slot(h, 2, "/s.S/S", GRPCPROM_SERVER_STREAMS | GRPCPROM_REGISTERED, GRPCPROM_SLOT_READY);
    add_slot(h, 3, "/s.S/B", GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS, GRPCPROM_SLOT_READY);
    char *page = render(h);
    if (page) {
        CHECK_LINE(page, "grpc_server_msg_sent_total{grpc_method=\"U\",grpc_service=\"s.S\",grpc_type=\"unary\"} 0");
        CHECK_LINE(page, "grpc_server_msg_sent_total{grpc_method=\"C\",grpc_service=\"s.S\",grpc_type=\"client_stream\"} 0");
        CHECK_LINE(page, "grpc_server_msg_sent_total{grpc_method=\"S\",grpc_service=\"s.S\",grpc_type=\"server_stream\"} 0");
        CHECK_LINE(page, "grpc_server_msg_sent_total{grpc_method=\"B\",grpc_service=\"s.S\",grpc_type=\"bidi_stream\"} 0");
    }
    free(page);
    free(h);
}

#define HIST(suffix, extra) \
    "grpc_server_handling_seconds_" suffix "{grpc_method=\"M\",grpc_service=\"s.S\",grpc_type=\"unary\"" extra "} "

/* Buckets add up, +Inf equals _count, _sum is seconds; the bounds in use
 * are bucket_count of them. */
static void test_histogram(void)
{
    struct grpcprom_header *h = make_region(1, 3);
    struct grpcprom_method *m = add_slot(h, 0, "/s.S/M", 0, GRPCPROM_SLOT_READY);
    SET(h, m, buckets[0], 4);
    SET(h, m, buckets[2], 5);
    SET(h, m, buckets[3], 6);  /* +Inf with 3 bounds */
    SET(h, m, latency_sum_us, 1500000);
    char *page = render(h);
    if (page) {
        int first = line_no(page, HIST("bucket", ",le=\"0.005\"") "4");
        CHECK(first >= 0);
        CHECK_INT(line_no(page, HIST("bucket", ",le=\"0.01\"") "4"), first + 1);
        CHECK_INT(line_no(page, HIST("bucket", ",le=\"0.025\"") "9"), first + 2);
        CHECK_INT(line_no(page, HIST("bucket", ",le=\"+Inf\"") "15"), first + 3);
        CHECK_INT(line_no(page, HIST("sum", "") "1.5"), first + 4);
        CHECK_INT(line_no(page, HIST("count", "") "15"), first + 5);
        CHECK_INT(count_lines_starting(page, "grpc_server_handling_seconds_bucket{"), 4);
    }
    free(page);

    SET(h, m, latency_sum_us, 123456);
    page = render(h);
    if (page)
        CHECK_LINE(page, HIST("sum", "") "0.123456");
    free(page);
    SET(h, m, latency_sum_us, 2000000000000ull);
    page = render(h);
    if (page)
        CHECK_LINE(page, HIST("sum", "") "2e+06");
    free(page);

    free(h);

    /* No bounds at all: the one bucket is +Inf. */
    h = make_region(1, 0);
    m = add_slot(h, 0, "/s.S/M", 0, GRPCPROM_SLOT_READY);
    SET(h, m, buckets[0], 4);
    page = render(h);
    CHECK(page != NULL);
    if (page) {
        CHECK_INT(count_lines_starting(page, "grpc_server_handling_seconds_bucket{"), 1);
        CHECK_LINE(page, HIST("bucket", ",le=\"+Inf\"") "4");
        CHECK_LINE(page, HIST("count", "") "4");
    }
    free(page);
    free(h);
}

/* Two slots with one label set (which a sane region never has) make one
 * series with their counts added, never a duplicate series. */
static void test_duplicates(void)
{
    struct grpcprom_header *h = make_region(3, 11);
    struct grpcprom_method *a = add_slot(h, 0, "/s.S/M", 0, GRPCPROM_SLOT_READY);
    struct grpcprom_method *b = add_slot(h, 2, "/s.S/M", GRPCPROM_REGISTERED, GRPCPROM_SLOT_READY);
    SET(h, a, started, 2);
    SET(h, b, started, 3);
    SET(h, a, buckets[11], 1);
    SET(h, b, buckets[0], 1);
    char *page = render(h);
    if (page) {
        CHECK_INT(count_lines_starting(page, "grpc_server_started_total{"), 1);
        CHECK_LINE(page, "grpc_server_started_total{grpc_method=\"M\",grpc_service=\"s.S\",grpc_type=\"unary\"} 5");
        CHECK_LINE(page, HIST("count", "") "2");
        CHECK_INT(count_lines_starting(page, "grpc_server_handled_total{"), GRPCPROM_CODES);
    }
    free(page);
    free(h);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* 1,000 methods, half registered: every series is there, quickly. */
static void test_many_methods(void)
{
    enum { N = 1000 };
    struct grpcprom_header *h = make_region(N, 11);
    for (uint32_t i = 0; i < N; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/pkg.v1.Service%03u/Method%04u", (N - 1 - i) % 37, i);
        struct grpcprom_method *m = add_slot(h, i, path, i % 2 ? GRPCPROM_REGISTERED : 0, GRPCPROM_SLOT_READY);
        SET(h, m, started, i);
        SET(h, m, handled[i % GRPCPROM_CODES], i);
        SET(h, m, buckets[i % 12], i);
        SET(h, m, latency_sum_us, (uint64_t)i * 1234);
    }
    struct grpcprom_buf out = {0};
    double best = 1e9;
    for (int round = 0; round < 5; round++) {
        out.len = 0;
        double t0 = now_ms();
        CHECK_INT(grpcprom_render(h, &out), 0);
        double t = now_ms() - t0;
        best = t < best ? t : best;
    }
    if (out.data) {
        CHECK_INT(count_lines_starting(out.data, "grpc_server_started_total{"), N);
        CHECK_INT(count_lines_starting(out.data, "grpc_server_handling_seconds_bucket{"), N * 12);
        /* 500 registered with all codes, 499 dynamic with one non-zero code (slot 0 has none). */
        CHECK_INT(count_lines_starting(out.data, "grpc_server_handled_total{"), 500 * GRPCPROM_CODES + 499);
        CHECK(out.len > 0 && out.data[out.len - 1] == '\n');
    }
    /* Speed is measured by tests/bench/bench_render, not asserted here: sanitizer builds are slow. */
    printf("test_render: 1000 methods rendered in %.2f ms (%zu bytes)\n", best, out.len);
    grpcprom_buf_free(&out);
    free(h);
}

/* The first line where two texts differ, reported; 1 when they are equal. */
static int same_text(const char *got, const char *want)
{
    int line = 1;
    for (size_t i = 0;; i++) {
        if (got[i] != want[i]) {
            const char *g = got + i, *w = want + i;
            while (g > got && g[-1] != '\n')
                g--, w--;
            fprintf(stderr, "line %d differs:\n  got:  %.*s\n  want: %.*s\n", line, (int)strcspn(g, "\n"),
                    g, (int)strcspn(w, "\n"), w);
            return 0;
        }
        if (got[i] == '\0')
            return 1;
        line += got[i] == '\n';
    }
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

/* A number of random magnitude: 0 to 10^digits - 1, for digits up to max. */
static uint64_t rnd_magnitude(int max)
{
    rnd_state ^= rnd_state << 13, rnd_state ^= rnd_state >> 7, rnd_state ^= rnd_state << 17;
    uint64_t limit = 1;
    for (int d = (int)(rnd_state >> 59) % (max + 1); d > 0; d--)
        limit *= 10;
    rnd_state ^= rnd_state << 13, rnd_state ^= rnd_state >> 7, rnd_state ^= rnd_state << 17;
    return rnd_state % limit;
}

/* 1,000 methods in scattered slots, of every type, some registered, with
 * counts and latency sums of every magnitude (the sums around where their
 * text changes form among them), against the sample lines written here the
 * plain way: method i is named so that it sorts i-th. */
static void test_many_methods_exact(void)
{
    enum { N = 1000 };
    static const uint64_t sums[] = {0, 1, 99, 100, 123, 999999, 1000000, 1000001, 12300000,
                                    999999999999ull, 1000000000000ull, 1000000000001ull,
                                    999999999999999ull, 1000000000000000ull, 1234567890123456ull,
                                    UINT64_MAX};
    static const uint32_t type_bits[] = {0, GRPCPROM_CLIENT_STREAMS, GRPCPROM_SERVER_STREAMS,
                                         GRPCPROM_CLIENT_STREAMS | GRPCPROM_SERVER_STREAMS};
    static const char *const type_names[] = {"unary", "client_stream", "server_stream", "bidi_stream"};
    /* Codes in name order: Aborted, AlreadyExists, Canceled, ... */
    static const int by_name[GRPCPROM_CODES] = {10, 6, 1, 15, 4, 9, 13, 3, 5, 0, 11, 7, 8, 16, 14, 12, 2};
    static const char *const les[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                      "0.5", "1", "2.5", "5", "10", "+Inf"};
    struct grpcprom_header *h = make_region(N, 11);
    static char labels[N][160];
    static uint64_t counts[N][3]; /* msg_received, msg_sent, started: the families' order */
    static uint64_t handled[N][GRPCPROM_CODES], buckets[N][12], sum_us[N];
    for (uint32_t i = 0; i < N; i++) {
        char path[128];
        const char *svc_text = "pkg.\\\"odd\\\\name\\n.S"; /* escaped, as the page shows it */
        if (i % 50 == 7)
            snprintf(path, sizeof(path), "/pkg.\"odd\\name\n.S/M%04u", i);
        else {
            snprintf(path, sizeof(path), "/com.example.platform.area%u.v1.Service%u/M%04u", i % 7, i % 13, i);
            svc_text = path + 1;
        }
        snprintf(labels[i], sizeof(labels[i]), "grpc_method=\"M%04u\",grpc_service=\"%.*s\",grpc_type=\"%s\"",
                 i, (int)strcspn(svc_text, "/"), svc_text, type_names[i % 4]);
        uint32_t slot = i * 7919 % N;
        uint32_t bits = type_bits[i % 4] | (i % 3 == 0 ? GRPCPROM_REGISTERED : 0);
        struct grpcprom_method *m = add_slot(h, slot, path, bits, GRPCPROM_SLOT_READY);
        for (int k = 0; k < 3; k++)
            counts[i][k] = i == 5 ? UINT64_MAX : rnd_magnitude(19);
        SET(h, m, msg_received, counts[i][0]);
        SET(h, m, msg_sent, counts[i][1]);
        SET(h, m, started, counts[i][2]);
        for (int c = 0; c < GRPCPROM_CODES; c++)
            SET(h, m, handled[c], handled[i][c] = rnd_magnitude(12) % 4 == 0 ? rnd_magnitude(12) : 0);
        for (int j = 0; j < 12; j++)
            SET(h, m, buckets[j], buckets[i][j] = rnd_magnitude(10));
        sum_us[i] = i < sizeof(sums) / sizeof(sums[0]) ? sums[i] : rnd_magnitude(19);
        SET(h, m, latency_sum_us, sum_us[i]);
    }

    struct grpcprom_buf want = {0};
    for (int c = 0; c < GRPCPROM_CODES; c++)
        for (int i = 0; i < N; i++)
            if (handled[i][by_name[c]] != 0 || i % 3 == 0)
                grpcprom_buf_printf(&want, "grpc_server_handled_total{grpc_code=\"%s\",%s} %llu\n",
                                    grpcprom_code_names[by_name[c]], labels[i],
                                    (unsigned long long)handled[i][by_name[c]]);
    for (int i = 0; i < N; i++) {
        uint64_t cum = 0;
        for (int j = 0; j < 12; j++)
            grpcprom_buf_printf(&want, "grpc_server_handling_seconds_bucket{%s,le=\"%s\"} %llu\n", labels[i],
                                les[j], (unsigned long long)(cum += buckets[i][j]));
        char sum[32];
        grpcprom_format_double(sum, (double)sum_us[i] / 1e6);
        grpcprom_buf_printf(&want, "grpc_server_handling_seconds_sum{%s} %s\n", labels[i], sum);
        grpcprom_buf_printf(&want, "grpc_server_handling_seconds_count{%s} %llu\n", labels[i],
                            (unsigned long long)cum);
    }
    static const char *const counters[] = {"msg_received", "msg_sent", "started"};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < N; i++)
            grpcprom_buf_printf(&want, "grpc_server_%s_total{%s} %llu\n", counters[k], labels[i],
                                (unsigned long long)counts[i][k]);

    char *page = render(h);
    if (page && want.data) {
        /* The sample lines of the method families, in their order, kept in place. */
        char *kept = page;
        for (const char *p = page; *p;) {
            size_t n = strcspn(p, "\n");
            n += p[n] == '\n';
            if (strncmp(p, "grpc_server_", 12) == 0) {
                memmove(kept, p, n);
                kept += n;
            }
            p += n;
        }
        *kept = '\0';
        CHECK(same_text(page, want.data));
    }
    CHECK(want.data != NULL);
    free(page);
    grpcprom_buf_free(&want);
    free(h);
}

/* The buffer grows, appends after what it holds, and reports failure. */
#define CLIENT_LABELS "grpc_method=\"Unary\",grpc_service=\"a.B\",grpc_type=\"server_stream\""

/* A process's client calls: go-grpc-prometheus' client families, in name
 * order before the server's, each series shown once touched (a zero is
 * not shown), apart from the server slot of the same path. */
static void test_client_families(void)
{
    struct grpcprom_header *h = make_region(4, 11);
    struct grpcprom_method *s = add_slot(h, 0, "/a.B/Unary", 0, GRPCPROM_SLOT_READY);
    SET(h, s, started, 5);
    struct grpcprom_method *c = add_slot(h, 1, "/a.B/Unary", GRPCPROM_SERVER_STREAMS, GRPCPROM_SLOT_READY);
    c->side = GRPCPROM_CLIENT;
    SET(h, c, started, 2);
    SET(h, c, msg_sent, 2);
    SET(h, c, handled[0], 1);
    SET(h, c, handled[14], 1);
    SET(h, c, buckets[0], 2);
    SET(h, c, latency_sum_us, 3000);
    SET(h, c, buckets[12 + 1], 1);   /* one send, in le=0.01 */
    SET(h, c, msg_sum_us[0], 6000);
    char *page = render(h);
    if (page == NULL) {
        free(h);
        return;
    }
    static const char *const families[] = {
        "# HELP grpc_client_handled_total Total number of RPCs completed by the client, regardless of success or failure.",
        "# HELP grpc_client_handling_seconds Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
        "# HELP grpc_client_msg_send_handling_seconds Histogram of response latency (seconds) of the gRPC single message send.",
        "# HELP grpc_client_msg_sent_total Total number of gRPC stream messages sent by the client.",
        "# HELP grpc_client_started_total Total number of RPCs started on the client.",
        "# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.",
    };
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        CHECK(line_no(page, families[i]) >= 0);
        if (i > 0)
            CHECK(line_no(page, families[i]) > line_no(page, families[i - 1]));
    }
    CHECK(line_no(page, "grpc_client_handled_total{grpc_code=\"OK\"," CLIENT_LABELS "} 1") >= 0);
    CHECK(line_no(page, "grpc_client_handled_total{grpc_code=\"Unavailable\"," CLIENT_LABELS "} 1") >= 0);
    CHECK(line_no(page, "grpc_client_handling_seconds_count{" CLIENT_LABELS "} 2") >= 0);
    CHECK(line_no(page, "grpc_client_handling_seconds_sum{" CLIENT_LABELS "} 0.003") >= 0);
    CHECK(line_no(page, "grpc_client_msg_send_handling_seconds_bucket{" CLIENT_LABELS ",le=\"0.005\"} 0") >= 0);
    CHECK(line_no(page, "grpc_client_msg_send_handling_seconds_bucket{" CLIENT_LABELS ",le=\"0.01\"} 1") >= 0);
    CHECK(line_no(page, "grpc_client_msg_send_handling_seconds_sum{" CLIENT_LABELS "} 0.006") >= 0);
    CHECK(line_no(page, "grpc_client_msg_sent_total{" CLIENT_LABELS "} 2") >= 0);
    CHECK(line_no(page, "grpc_client_started_total{" CLIENT_LABELS "} 2") >= 0);
    /* Families with no sample are left out whole, as Go leaves them out. */
    CHECK(strstr(page, "grpc_client_msg_received_total") == NULL);
    CHECK(strstr(page, "grpc_client_msg_recv_handling_seconds") == NULL);
    CHECK(line_no(page, "grpc_server_started_total{grpc_method=\"Unary\",grpc_service=\"a.B\",grpc_type=\"unary\"} 5") >= 0);
    CHECK(line_no(page, "grpc_server_msg_sent_total{grpc_method=\"Unary\",grpc_service=\"a.B\",grpc_type=\"unary\"} 0") >= 0);
    free(page);

    /* Without client slots, no client family at all. */
    c->side = GRPCPROM_SERVER;
    atomic_store(&c->state, GRPCPROM_SLOT_EMPTY);
    page = render(h);
    CHECK(page && strstr(page, "grpc_client_") == NULL);
    free(page);
    free(h);
}

static void test_buf(void)
{
    struct grpcprom_buf b = {0};
    grpcprom_buf_printf(&b, "%s-%d", "x", 1);
    CHECK_STR(b.data, "x-1");
    CHECK_INT(b.len, 3);
    char big[10000];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    grpcprom_buf_printf(&b, "%s", big);
    CHECK_INT(b.len, 3 + sizeof(big) - 1);
    CHECK(b.data && strlen(b.data) == b.len && b.data[3] == 'y');
    CHECK(!b.failed);

    struct grpcprom_header *h = make_region(1, 11);
    size_t before = b.len;
    CHECK_INT(grpcprom_render(h, &b), 0);
    CHECK(b.data && strncmp(b.data + before, "# HELP grpc_server_handled_total ", 33) == 0);

    b.failed = 1;
    before = b.len;
    CHECK_INT(grpcprom_render(h, &b), -ENOMEM);
    grpcprom_buf_printf(&b, "more");
    CHECK_INT(b.len, before);
    grpcprom_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0 && !b.failed);
    free(h);
}

int main(void)
{
    test_client_families();
    test_format_double();
    test_full_page();
    test_build_info_texts();
    test_empty_region();
    test_order();
    test_registered();
    test_labels();
    test_overflow_slots();
    test_types();
    test_histogram();
    test_duplicates();
    test_many_methods();
    test_many_methods_exact();
    test_buf();
    CHECK_DONE();
}
