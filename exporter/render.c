/* render.c: renders a region as go-grpc-prometheus server (and client) metrics, in the Prometheus text format 0.0.4. */
#include "render.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for n more bytes and the NUL; on failure marks the buffer failed. */
static int buf_reserve(struct grpcprom_buf *b, size_t n)
{
    if (b->failed)
        return -1;
    if (n >= SIZE_MAX - b->len) {
        b->failed = 1;
        return -1;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static void buf_put(struct grpcprom_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(struct grpcprom_buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* The page's writers append at a cursor into a buffer that already has
 * room for the whole page (see grpcprom_render), so a line costs no check. */
static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* Writes the digits in place, two at a time, once their count is known. */
static char *put_u64(char *p, uint64_t v)
{
    static const char pairs[] = "0001020304050607080910111213141516171819"
                                "2021222324252627282930313233343536373839"
                                "4041424344454647484950515253545556575859"
                                "6061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    size_t n = 1;
    for (uint64_t ten = 10; n < 20 && v >= ten; ten *= 10)
        n++;
    char *d = p + n;
    for (; v >= 100; v /= 100) {
        d -= 2;
        memcpy(d, pairs + v % 100 * 2, 2);
    }
    if (v >= 10)
        memcpy(d - 2, pairs + v * 2, 2);
    else
        d[-1] = (char)('0' + v);
    return p + n;
}

void grpcprom_buf_free(struct grpcprom_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

void grpcprom_buf_printf(struct grpcprom_buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    size_t room = b->cap - b->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? room : 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && b->data && (size_t)n < room) {
        b->len += (size_t)n;
        return;
    }
    if (n < 0)
        b->failed = 1;
    if (n >= 0 && buf_reserve(b, (size_t)n) == 0) {
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
        return;
    }
    if (b->data)
        b->data[b->len] = '\0'; /* undo a truncated first attempt */
}

/* Lays out nd significant digits (the first not 0, the last not 0 unless
 * it is the only one) of a number of decimal exponent exp the way Go's 'g'
 * with shortest precision does: d.ddde±dd (two exponent digits at least)
 * when the exponent is below -4 or at least 6, plain decimals otherwise.
 * Returns the end of the text, which is not NUL-terminated. */
static char *put_g(char *o, const char *digs, int nd, int exp)
{
    if (exp < -4 || exp >= 6) {
        *o++ = digs[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digs + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        int ae = exp < 0 ? -exp : exp; /* at most 324 */
        *o++ = 'e';
        *o++ = exp < 0 ? '-' : '+';
        if (ae >= 100)
            *o++ = (char)('0' + ae / 100);
        *o++ = (char)('0' + ae / 10 % 10);
        *o++ = (char)('0' + ae % 10);
        return o;
    }
    if (exp < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = -1; i > exp; i--)
            *o++ = '0';
        memcpy(o, digs, (size_t)nd);
        return o + nd;
    }
    for (int i = 0; i <= exp; i++)
        *o++ = i < nd ? digs[i] : '0';
    if (nd > exp + 1) {
        *o++ = '.';
        memcpy(o, digs + exp + 1, (size_t)(nd - exp - 1));
        o += nd - exp - 1;
    }
    return o;
}

/* Finds the fewest significant digits whose correctly rounded text parses
 * back to v. For normal numbers 15 digits always survive a round trip the
 * other way (DBL_DIG), so when the 15-digit text parses back to v, it is the
 * shortest once its trailing zeros go; otherwise 16 or 17 digits are needed.
 * That keeps it to at most three printf/strtod pairs. */
void grpcprom_format_double(char out[32], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) {
        strcpy(out, "0");
        return;
    }

    char tmp[64];
    for (int p = fabs(v) >= DBL_MIN ? 15 : 1;; p++) {
        snprintf(tmp, sizeof(tmp), "%.*e", p - 1, v);
        if (p >= 17 || strtod(tmp, NULL) == v)
            break;
    }

    /* tmp is [-]d[<decimal point>ddd]e<sign>dd; the decimal point depends on
     * the locale, so only the digits and the exponent are taken from it. */
    char digs[20];
    int nd = 0, exp = 0, neg = tmp[0] == '-';
    const char *s = tmp + neg;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9' && nd < (int)sizeof(digs))
            digs[nd++] = *s;
    if (*s == 'e')
        exp = (int)strtol(s + 1, NULL, 10);
    while (nd > 1 && digs[nd - 1] == '0')
        nd--;

    char *o = out;
    if (neg)
        *o++ = '-';
    *put_g(o, digs, nd, exp) = '\0';
}

/* Appends us microseconds as seconds: the text grpcprom_format_double gives
 * for (double)us / 1e6, without printf and strtod. Below 10^15 that double
 * is the nearest one to the exact decimal quotient, which has at most 15
 * significant digits, and no two decimals of 15 digits or fewer share a
 * nearest double (DBL_DIG): the shortest text is that decimal. */
static char *put_seconds(char *p, uint64_t us)
{
    if (us >= 1000000000000000ull) {
        char text[32];
        grpcprom_format_double(text, (double)us / 1e6);
        return put(p, text, strlen(text));
    }
    if (us == 0)
        return put(p, "0", 1);
    char tmp[20], *d = tmp + sizeof(tmp);
    for (; us != 0; us /= 10)
        *--d = (char)('0' + us % 10);
    int nd = (int)(tmp + sizeof(tmp) - d), exp = nd - 7;
    while (d[nd - 1] == '0')
        nd--;
    return put_g(p, d, nd, exp);
}

/* Appends a label value with the escapes of the text format. */
static void put_escaped(struct grpcprom_buf *b, const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = s[i] == '\\' ? "\\\\" : s[i] == '"' ? "\\\"" : s[i] == '\n' ? "\\n" : NULL;
        if (!rep)
            continue;
        buf_put(b, s + run, i - run);
        buf_put(b, rep, 2);
        run = i + 1;
    }
    buf_put(b, s + run, n - run);
}

/* Splits a path as go-grpc-prometheus' splitMethodName does: without its
 * leading '/', at the first '/' ("/a.B/c/D" is service "a.B", method "c/D");
 * a path with no other '/' is "unknown" for both. */
static void split_path(const char *p, size_t n, const char **svc, size_t *svc_len,
                       const char **meth, size_t *meth_len)
{
    if (n > 0 && p[0] == '/') {
        p++;
        n--;
    }
    const char *slash = memchr(p, '/', n);
    if (slash == NULL) {
        *svc = *meth = "unknown";
        *svc_len = *meth_len = strlen("unknown");
        return;
    }
    *svc = p;
    *svc_len = (size_t)(slash - p);
    *meth = slash + 1;
    *meth_len = n - *svc_len - 1;
}

/* One READY slot. Its strings are copies in an arena, so nothing another
 * process writes can change them while they are sorted. */
struct entry {
    uint32_t side;  /* grpcprom_side: server entries sort first */
    uint32_t slot;
    uint32_t type_bits;
    const char *type;
    size_t svc_off, svc_len, meth_off, meth_len;
    size_t labels_off, labels_len; /* grpc_method="..",grpc_service="..",grpc_type=".." */
    const char *svc, *meth, *labels; /* set once the arena has stopped growing */
    int first; /* starts a series: its labels differ from the entry before */
    /* Summed over the shards in one go, when the slot is collected. */
    struct grpcprom_totals t;
};

/* What the family writers share for one rendering: the entries of one
 * side, and whether a series with nothing to show is left out (go-grpc-
 * prometheus shows a client series once it is touched; a server's from
 * its first call, or from the start when pre-initialised). */
struct page {
    struct entry *ents;
    size_t n;
    uint32_t bucket_count;
    int skip_zero;
};

/* The families of one side: their names and go-grpc-prometheus' HELP. */
struct side_names {
    const char *started, *started_help;
    const char *handled, *handled_help;
    const char *received, *received_help;
    const char *sent, *sent_help;
    const char *handling, *handling_help;
    const char *msg_recv, *msg_recv_help;   /* a client's per-message histograms */
    const char *msg_send, *msg_send_help;
};

static const struct side_names server_names = {
    "grpc_server_started_total", "Total number of RPCs started on the server.",
    "grpc_server_handled_total",
    "Total number of RPCs completed on the server, regardless of success or failure.",
    "grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.",
    "grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.",
    "grpc_server_handling_seconds",
    "Histogram of response latency (seconds) of gRPC that had been application-level handled by "
    "the server.",
    NULL, NULL, NULL, NULL,
};

static const struct side_names client_names = {
    "grpc_client_started_total", "Total number of RPCs started on the client.",
    "grpc_client_handled_total",
    "Total number of RPCs completed by the client, regardless of success or failure.",
    "grpc_client_msg_received_total", "Total number of RPC stream messages received by the client.",
    "grpc_client_msg_sent_total", "Total number of gRPC stream messages sent by the client.",
    "grpc_client_handling_seconds",
    "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
    "grpc_client_msg_recv_handling_seconds",
    "Histogram of response latency (seconds) of the gRPC single message receive.",
    "grpc_client_msg_send_handling_seconds",
    "Histogram of response latency (seconds) of the gRPC single message send.",
};

/* Go's string order: bytewise, a prefix first. */
static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0)
        return c;
    return (an > bn) - (an < bn);
}

/* client_golang sorts series by label values in label-name order:
 * grpc_method, grpc_service, grpc_type. */
static int cmp_labels(const struct entry *a, const struct entry *b)
{
    int c = cmp_bytes(a->meth, a->meth_len, b->meth, b->meth_len);
    if (c == 0)
        c = cmp_bytes(a->svc, a->svc_len, b->svc, b->svc_len);
    if (c == 0)
        c = strcmp(a->type, b->type);
    return c;
}

static int cmp_entry(const void *pa, const void *pb)
{
    const struct entry *a = pa, *b = pb;
    if (a->side != b->side)
        return (a->side > b->side) - (a->side < b->side);
    int c = cmp_labels(a, b);
    if (c != 0)
        return c;
    return (a->slot > b->slot) - (a->slot < b->slot);
}

/* The end of the series starting at entries[i]. Slots with the same labels
 * (which a sane region never has) are one series, their counts added, so
 * the page never holds a duplicate series. */
static size_t series_end(const struct page *pg, size_t i)
{
    for (i++; i < pg->n && !pg->ents[i].first; i++)
        ;
    return i;
}

static uint64_t series_sum(const struct page *pg, size_t i, size_t end, size_t field)
{
    uint64_t sum = 0;
    for (; i < end; i++)
        sum += *(const uint64_t *)((const char *)&pg->ents[i].t + field);
    return sum;
}

static int series_registered(const struct page *pg, size_t i, size_t end)
{
    for (; i < end; i++)
        if (pg->ents[i].type_bits & GRPCPROM_REGISTERED)
            return 1;
    return 0;
}

/* A family of a page that leaves out series with nothing to show, and so
 * has no sample, is left out whole, as Go leaves out an empty family:
 * returns where the page goes on. */
static char *unless_empty(const struct page *pg, char *family, char *samples, char *end)
{
    return pg->skip_zero && end == samples ? family : end;
}

/* HELP texts here hold no backslash or newline, so they need no escaping. */
static char *put_header(char *p, const char *name, const char *help, const char *type)
{
    p = put(p, "# HELP ", 7);
    p = put(p, name, strlen(name));
    *p++ = ' ';
    p = put(p, help, strlen(help));
    p = put(p, "\n# TYPE ", 8);
    p = put(p, name, strlen(name));
    *p++ = ' ';
    p = put(p, type, strlen(type));
    *p++ = '\n';
    return p;
}

/* Every sample line is a head ("name{" and, for handled, the code), the
 * labels of its series, a tail ("} ", or the le pair and "} "), the value
 * and a newline. Heads and tails are laid out once per family, and copied
 * whole (a fixed size copies faster), the cursor moving by their length. */
struct text {
    char s[64];
    size_t n;
};

/* The longest head is 57 bytes (grpc_code="FailedPrecondition"), the
 * longest tail 32 (le and a 24-byte number), a value 24: a line, and what
 * the whole copies touch (57 + labels + 64), stay within its labels and
 * LINE_EXTRA. */
#define LINE_EXTRA 128
/* handled, per histogram its buckets and +Inf, sum and count, 3 counters */
#define LINES_PER_ENTRY(nb) (GRPCPROM_CODES + GRPCPROM_HISTOGRAMS * ((nb) + 3) + 3)
#define PAGE_FIXED 4096 /* HELP and TYPE lines and the shim's own counters: about 1.7 KB */

static struct text text_of(const char *s)
{
    struct text t = {.n = strlen(s)};
    memcpy(t.s, s, t.n);
    return t;
}

static char *put_labels(char *p, const struct text *head, const struct entry *e, const struct text *tail)
{
    memcpy(p, head->s, sizeof(head->s));
    p = put(p + head->n, e->labels, e->labels_len);
    memcpy(p, tail->s, sizeof(tail->s));
    return p + tail->n;
}

static char *put_line(char *p, const struct text *head, const struct entry *e, const struct text *tail,
                      uint64_t v)
{
    p = put_u64(put_labels(p, head, e, tail), v);
    *p++ = '\n';
    return p;
}

static char *put_method_counter(const struct page *pg, char *p, const char *name, const char *help,
                                size_t field)
{
    char *const family = p;
    p = put_header(p, name, help, "counter");
    char *const samples = p;
    const struct text tail = text_of("} ");
    struct text head = {0};
    head.n = (size_t)snprintf(head.s, sizeof(head.s), "%s{", name);
    for (size_t i = 0, end; i < pg->n; i = end) {
        end = series_end(pg, i);
        uint64_t v = series_sum(pg, i, end, field);
        if (v != 0 || !pg->skip_zero)
            p = put_line(p, &head, &pg->ents[i], &tail, v);
    }
    return unless_empty(pg, family, samples, p);
}

/* Registered methods show every code, as go-grpc-prometheus pre-initialises
 * them; others only the codes they have seen. Codes sort first, by name. */
static char *put_handled(const struct page *pg, char *p, const char *name, const char *help)
{
    int order[GRPCPROM_CODES];
    for (int i = 0; i < GRPCPROM_CODES; i++) {
        int j = i;
        for (; j > 0 && strcmp(grpcprom_code_names[order[j - 1]], grpcprom_code_names[i]) > 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    char *const family = p;
    p = put_header(p, name, help, "counter");
    char *const samples = p;
    const struct text tail = text_of("} ");
    for (int c = 0; c < GRPCPROM_CODES; c++) {
        struct text head = {0};
        head.n = (size_t)snprintf(head.s, sizeof(head.s), "%s{grpc_code=\"%s\",", name,
                                  grpcprom_code_names[order[c]]);
        for (size_t i = 0, end; i < pg->n; i = end) {
            end = series_end(pg, i);
            uint64_t v = 0;
            for (size_t k = i; k < end; k++)
                v += pg->ents[k].t.handled[order[c]];
            if (v != 0 || series_registered(pg, i, end))
                p = put_line(p, &head, &pg->ents[i], &tail, v);
        }
    }
    return unless_empty(pg, family, samples, p);
}

/* Buckets are stored per bucket: one snapshot of them is summed up here, so
 * le="+Inf" and _count come from the same numbers and always agree. */
static char *put_histogram(const struct page *pg, char *p, const struct grpcprom_header *h,
                           const char *name, const char *help, enum grpcprom_histogram which)
{
    const uint32_t nb = pg->bucket_count;
    struct text le[GRPCPROM_MAX_BUCKETS + 1];
    for (uint32_t j = 0; j <= nb; j++) {
        char num[32];
        if (j < nb)
            grpcprom_format_double(num, h->bucket_bounds[j]);
        le[j].n = (size_t)snprintf(le[j].s, sizeof(le[j].s), ",le=\"%s\"} ", j < nb ? num : "+Inf");
    }
    struct text bucket = {0}, sum = {0}, count = {0};
    bucket.n = (size_t)snprintf(bucket.s, sizeof(bucket.s), "%s_bucket{", name);
    sum.n = (size_t)snprintf(sum.s, sizeof(sum.s), "%s_sum{", name);
    count.n = (size_t)snprintf(count.s, sizeof(count.s), "%s_count{", name);
    const struct text tail = text_of("} ");
    const size_t first = (size_t)which * (nb + 1);
    char *const family = p;
    p = put_header(p, name, help, "histogram");
    char *const samples = p;
    for (size_t i = 0, end; i < pg->n; i = end) {
        end = series_end(pg, i);
        const struct entry *e = &pg->ents[i];
        uint64_t b[GRPCPROM_MAX_BUCKETS + 1] = {0}, sum_us = 0, cum = 0, total = 0;
        for (size_t k = i; k < end; k++) {
            for (uint32_t j = 0; j <= nb; j++)
                b[j] += pg->ents[k].t.buckets[first + j];
            sum_us += which == GRPCPROM_HANDLING ? pg->ents[k].t.latency_sum_us
                                                 : pg->ents[k].t.msg_sum_us[which - 1];
        }
        for (uint32_t j = 0; j <= nb; j++)
            total += b[j];
        if (total == 0 && pg->skip_zero)
            continue;
        for (uint32_t j = 0; j <= nb; j++) {
            cum += b[j];
            p = put_line(p, &bucket, e, &le[j], cum);
        }
        p = put_seconds(put_labels(p, &sum, e, &tail), sum_us);
        *p++ = '\n';
        p = put_line(p, &count, e, &tail, cum);
    }
    return unless_empty(pg, family, samples, p);
}

static char *put_plain_counter(char *p, const char *name, const char *help, const _Atomic uint64_t *v)
{
    p = put_header(p, name, help, "counter");
    p = put(p, name, strlen(name));
    *p++ = ' ';
    p = put_u64(p, atomic_load_explicit(v, memory_order_relaxed));
    *p++ = '\n';
    return p;
}

/* A label value from a text field of the region: up to its first NUL,
 * letters, digits and ". _ + -" only, else "unknown" (a writer may be
 * rewriting it, or the region be damaged). */
static const char *region_text(const char *field, size_t size, char *out)
{
    size_t n = strnlen(field, size);
    static const char allowed[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-";
    memcpy(out, field, n);
    out[n] = '\0';
    return n > 0 && strspn(out, allowed) == n ? out : "unknown";
}

/* grpcprom_build_info, as go_info and the *_build_info of exporters: 1,
 * labelled by this grpcprom's version and by what the region's writers
 * count with. */
static char *put_build_info(char *p, const struct grpcprom_header *h)
{
    char grpc[sizeof(h->grpc_version) + 1], mode[sizeof(h->counting_mode) + 1];
    p = put_header(p, "grpcprom_build_info",
                   "A metric with a constant '1' value labeled by the version of grpcprom, the "
                   "version of the libgrpc core it counts and how it counts (internals or "
                   "public_api).", "gauge");
    return p + sprintf(p, "grpcprom_build_info{grpc_version=\"%s\",mode=\"%s\",version=\"%s\"} 1\n",
                       region_text(h->grpc_version, sizeof(h->grpc_version), grpc),
                       region_text(h->counting_mode, sizeof(h->counting_mode), mode),
                       GRPCPROM_VERSION);
}

/* Copies each READY slot's path into the arena and lays out its labels once,
 * so the families below only copy bytes. A path that is no label text (the
 * shim never writes one) is left out: one bad value would fail the scrape.
 * Returns the number of entries. */
static size_t collect(const struct grpcprom_header *h, uint32_t used, struct entry *ents,
                      struct grpcprom_buf *arena)
{
    const struct grpcprom_method *methods = grpcprom_region_methods(h);
    size_t n = 0;
    for (uint32_t i = 0; i < used + GRPCPROM_OVERFLOW_SLOTS; i++) {
        uint32_t slot = i < used ? i : h->method_capacity + (i - used);
        const struct grpcprom_method *m = &methods[slot];
        if (atomic_load_explicit(&m->state, memory_order_acquire) != GRPCPROM_SLOT_READY)
            continue;
        struct grpcprom_totals t;
        grpcprom_region_sum(h, m, &t);
        if (slot >= h->method_capacity && t.started == 0)
            continue; /* an overflow slot no call has reached */
        char path[GRPCPROM_PATH_MAX];
        size_t len = m->path_len < sizeof(path) ? m->path_len : sizeof(path);
        memcpy(path, m->path, len);
        if (!grpcprom_label_text_ok(path, len))
            continue;
        struct entry *e = &ents[n++];
        e->side = m->side == GRPCPROM_CLIENT ? GRPCPROM_CLIENT : GRPCPROM_SERVER;
        e->slot = slot;
        e->type_bits = atomic_load_explicit(&m->type_bits, memory_order_relaxed);
        e->type = grpcprom_type_label(e->type_bits);
        e->t = t;
        const char *svc, *meth;
        split_path(path, len, &svc, &e->svc_len, &meth, &e->meth_len);

        e->svc_off = arena->len;
        buf_put(arena, svc, e->svc_len);
        e->meth_off = arena->len;
        buf_put(arena, meth, e->meth_len);
        e->labels_off = arena->len;
        buf_puts(arena, "grpc_method=\"");
        put_escaped(arena, meth, e->meth_len);
        buf_puts(arena, "\",grpc_service=\"");
        put_escaped(arena, svc, e->svc_len);
        buf_puts(arena, "\",grpc_type=\"");
        buf_puts(arena, e->type);
        buf_puts(arena, "\"");
        e->labels_len = arena->len - e->labels_off;
    }
    return n;
}

/* The shim's count of calls in the overflow slots, by reason. */
static char *put_overflow_reasons(char *p, const struct grpcprom_header *h)
{
    static const char name[] = "grpcprom_overflow_calls_total";
    p = put_header(p, name, "Calls counted under grpc_service=\"_OTHER\" instead of a series of their "
                            "own, by reason.", "counter");
    for (int r = 0; r < GRPCPROM_OVERFLOW_REASONS; r++) {
        const char *reason = grpcprom_overflow_reason_names[r];
        p = put(p, name, sizeof(name) - 1);
        p = put(p, "{reason=\"", 9);
        p = put(p, reason, strlen(reason));
        p = put(p, "\"} ", 3);
        p = put_u64(p, atomic_load_explicit(&h->overflow_calls[r], memory_order_relaxed));
        *p++ = '\n';
    }
    return p;
}

/* The families of one side, in Go's order. */
static char *put_side(const struct page *pg, char *p, const struct grpcprom_header *h,
                      const struct side_names *names)
{
    p = put_handled(pg, p, names->handled, names->handled_help);
    p = put_histogram(pg, p, h, names->handling, names->handling_help, GRPCPROM_HANDLING);
    p = put_method_counter(pg, p, names->received, names->received_help,
                           offsetof(struct grpcprom_totals, msg_received));
    if (names->msg_recv) {
        p = put_histogram(pg, p, h, names->msg_recv, names->msg_recv_help, GRPCPROM_MSG_RECV);
        p = put_histogram(pg, p, h, names->msg_send, names->msg_send_help, GRPCPROM_MSG_SEND);
    }
    p = put_method_counter(pg, p, names->sent, names->sent_help,
                           offsetof(struct grpcprom_totals, msg_sent));
    return put_method_counter(pg, p, names->started, names->started_help,
                              offsetof(struct grpcprom_totals, started));
}

/* Sorts the entries, then makes room for the longest page they can give
 * once, so the families append without a check. Over-reserving costs
 * address space only: pages never written are never touched. */
int grpcprom_render(const struct grpcprom_header *h, struct grpcprom_buf *out)
{
    if (out->failed)
        return -ENOMEM;
    const size_t start = out->len;
    struct grpcprom_buf arena = {0};
    /* Writers may hand out more slots meanwhile: read the count once. */
    const uint32_t used = grpcprom_region_methods_used(h);
    struct entry *ents = calloc((size_t)used + GRPCPROM_OVERFLOW_SLOTS, sizeof(*ents));
    size_t n = ents ? collect(h, used, ents, &arena) : 0;
    if (!ents || arena.failed) {
        out->failed = 1;
        goto done;
    }
    const uint32_t nb = h->bucket_count < GRPCPROM_MAX_BUCKETS ? h->bucket_count : GRPCPROM_MAX_BUCKETS;
    size_t room = PAGE_FIXED;
    for (size_t i = 0; i < n; i++) {
        ents[i].svc = arena.data + ents[i].svc_off;
        ents[i].meth = arena.data + ents[i].meth_off;
        ents[i].labels = arena.data + ents[i].labels_off;
        room += LINES_PER_ENTRY(nb) * (ents[i].labels_len + LINE_EXTRA);
    }
    qsort(ents, n, sizeof(*ents), cmp_entry);
    size_t servers = 0;
    while (servers < n && ents[servers].side == GRPCPROM_SERVER)
        servers++;
    for (size_t i = 0; i < n; i++)
        ents[i].first = i == 0 || ents[i - 1].side != ents[i].side ||
                        cmp_labels(&ents[i - 1], &ents[i]) != 0;
    if (buf_reserve(out, room) != 0)
        goto done;

    const struct page server_page = {.ents = ents, .n = servers, .bucket_count = nb},
                      client_page = {.ents = ents + servers, .n = n - servers, .bucket_count = nb,
                                     .skip_zero = 1};
    char *p = out->data + out->len;
    /* Families in Go's order: sorted by name. A process that made no
     * client call has no client family, as Go shows no empty family. */
    if (client_page.n > 0)
        p = put_side(&client_page, p, h, &client_names);
    p = put_side(&server_page, p, h, &server_names);
    p = put_build_info(p, h);
    p = put_plain_counter(p, "grpcprom_calls_untracked_total",
                          "Calls the shim could not follow (call table full, a libgrpc layout it "
                          "does not know, or calls the public-API mode cannot see).",
                          &h->calls_untracked);
    p = put_overflow_reasons(p, h);
    p = put_plain_counter(p, "grpcprom_unknown_method_calls_total",
                          "Calls to methods the server does not serve (answered Unimplemented); "
                          "not labelled by path, since clients choose paths.",
                          &h->unknown_methods);
    out->len = (size_t)(p - out->data);
    *p = '\0';
done:
    free(ents);
    grpcprom_buf_free(&arena);
    if (!out->failed)
        return 0;
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    return -ENOMEM;
}
