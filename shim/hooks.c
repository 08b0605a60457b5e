/* hooks.c: the functions of libgrpc (and libgrpc++) that the preloaded shim
 * stands in for. Each decodes what gRPC is doing for the tracker, then calls
 * the real function. Until the process registers or starts a gRPC server,
 * every hook only forwards: a client or any other program is left alone. */
#include <dlfcn.h>
#include <grpc/grpc.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attach.h"
#include "cxx_services.h"
#include "layout.h"
#include "log.h"
#include "options.h"
#include "page.h"
#include "protoset.h"
#include "ptrmap.h"
#include "store.h"
#include "surface.h"
#include "tracker.h"

#define EXPORT __attribute__((visibility("default")))

/* Resolved real functions. */
static grpc_call_error (*real_start_batch)(grpc_call *, const grpc_op *, size_t, void *, void *);
static void *(*real_register_method)(grpc_server *, const char *, const char *,
                                     grpc_server_register_method_payload_handling, uint32_t);
static void (*real_server_start)(grpc_server *);
static void (*real_server_destroy)(grpc_server *);
static void *(*real_builder_register_service)(void *, void *);
static void *(*real_builder_register_service_host)(void *, const void *, void *);
static gpr_timespec (*real_gpr_now)(gpr_clock_type);
static void (*real_set_completion_queue)(grpc_call *, grpc_completion_queue *);
static void (*real_cq_end_op)(grpc_completion_queue *, void *, void *,
                              void (*)(void *, void *), void *, void *, bool);
static const char *(*real_version_string)(void);
static grpc_call_error (*real_request_call)(grpc_server *, grpc_call **, grpc_call_details *,
                                            grpc_metadata_array *, grpc_completion_queue *,
                                            grpc_completion_queue *, void *);
static grpc_call_error (*real_request_registered_call)(grpc_server *, void *, grpc_call **,
                                                       gpr_timespec *, grpc_metadata_array *,
                                                       grpc_byte_buffer **, grpc_completion_queue *,
                                                       grpc_completion_queue *, void *);
static grpc_event (*real_cq_next)(grpc_completion_queue *, gpr_timespec, void *);
static grpc_event (*real_cq_pluck)(grpc_completion_queue *, void *, gpr_timespec, void *);
static grpc_completion_queue *(*real_cq_create)(const grpc_completion_queue_factory *,
                                                const grpc_completion_queue_attributes *, void *);
static grpc_completion_queue *(*real_cq_create_for_callback)(grpc_completion_queue_functor *,
                                                             void *);
static void (*real_cq_destroy)(grpc_completion_queue *);
static int (*real_cq_cache_flush)(grpc_completion_queue *, void **, int *);
static grpc_call_error (*real_cancel_with_status)(grpc_call *, grpc_status_code, const char *,
                                                  void *);
static void (*real_call_ref)(grpc_call *);
static void (*real_call_unref)(grpc_call *);
static grpc_call *(*real_channel_create_call)(grpc_channel *, grpc_call *, uint32_t,
                                              grpc_completion_queue *, grpc_slice, const grpc_slice *,
                                              gpr_timespec, void *);
static grpc_call *(*real_channel_create_registered_call)(grpc_channel *, grpc_call *, uint32_t,
                                                         grpc_completion_queue *, void *, gpr_timespec,
                                                         void *);

static struct options options;
static struct grpcprom_header *region;
static struct ptrmap registered;            /* registered-method handle -> slot */
/* The internals the hooks read, published (release) once the tables they
 * fill exist; NULL while nothing is counted. `layout` publishes new calls,
 * and becomes NULL for good once a published call does not look as it
 * says; `followed` keeps reading the batches of calls already followed, so
 * that they still end with their own status. */
static const struct libgrpc_layout *_Atomic layout;
static const struct libgrpc_layout *_Atomic followed;
/* Counting through the public API alone (surface.c): set instead of the two
 * above when the build is unknown or GRPCPROM_INTERNALS=0. */
static atomic_bool surface_mode;
static int64_t gpr_monotonic_offset_ns;     /* tracker_now_ns() - gpr_now(GPR_CLOCK_MONOTONIC) */
static atomic_bool page_started;
/* Set with `followed` when the calls the process makes as a client are
 * counted too (GRPCPROM_CLIENT, and the internals of a known build). */
static atomic_bool clients_counted;
/* Set when a client call, not a server, made the process count: a
 * descriptor set then types client slots and declares no server method. */
static bool counting_for_a_client;

struct registered_method {
    struct ptrmap_entry entry;          /* key: the handle */
    struct grpcprom_method *_Atomic method;
    grpc_server *_Atomic server;        /* whose handle it is */
};

/* The call gRPC bound last on this thread, to check a publish. */
static __thread grpc_call *bound_call __attribute__((tls_model("initial-exec")));

static void *find_symbol(const char *name)
{
    void *sym = dlsym(RTLD_NEXT, name);
    if (sym)
        return sym;
    /* Ruby and other plugins load libgrpc after the shim, into a local scope. */
    static const char *const libraries[] = {"libgrpc.so.29", "libgrpc++.so.1.51", "libgpr.so.29"};
    for (size_t i = 0; i < sizeof(libraries) / sizeof(libraries[0]) && !sym; i++) {
        void *lib = dlopen(libraries[i], RTLD_LAZY | RTLD_NOLOAD);
        if (lib) {
            sym = dlsym(lib, name);
            dlclose(lib);
        }
    }
    return sym;
}

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static atomic_bool resolved;

static void resolve_all(void)
{
    *(void **)&real_start_batch = find_symbol("grpc_call_start_batch");
    *(void **)&real_register_method = find_symbol("grpc_server_register_method");
    *(void **)&real_server_start = find_symbol("grpc_server_start");
    *(void **)&real_server_destroy = find_symbol("grpc_server_destroy");
    *(void **)&real_gpr_now = find_symbol("gpr_now");
    *(void **)&real_builder_register_service = find_symbol(CXX_REGISTER_SERVICE);
    *(void **)&real_builder_register_service_host = find_symbol(CXX_REGISTER_SERVICE_HOST);
    *(void **)&real_set_completion_queue = find_symbol(LAYOUT_SET_CQ_SYMBOL);
    *(void **)&real_cq_end_op = find_symbol(LAYOUT_END_OP_SYMBOL);
    *(void **)&real_version_string = find_symbol("grpc_version_string");
    *(void **)&real_request_call = find_symbol("grpc_server_request_call");
    *(void **)&real_request_registered_call = find_symbol("grpc_server_request_registered_call");
    *(void **)&real_cq_next = find_symbol("grpc_completion_queue_next");
    *(void **)&real_cq_pluck = find_symbol("grpc_completion_queue_pluck");
    *(void **)&real_cq_create = find_symbol("grpc_completion_queue_create");
    *(void **)&real_cq_create_for_callback = find_symbol("grpc_completion_queue_create_for_callback");
    *(void **)&real_cq_destroy = find_symbol("grpc_completion_queue_destroy");
    *(void **)&real_cq_cache_flush = find_symbol("grpc_completion_queue_thread_local_cache_flush");
    *(void **)&real_cancel_with_status = find_symbol("grpc_call_cancel_with_status");
    *(void **)&real_call_ref = find_symbol("grpc_call_ref");
    *(void **)&real_call_unref = find_symbol("grpc_call_unref");
    *(void **)&real_channel_create_call = find_symbol("grpc_channel_create_call");
    *(void **)&real_channel_create_registered_call = find_symbol("grpc_channel_create_registered_call");
    atomic_store_explicit(&resolved, true, memory_order_release);
}

static __attribute__((noinline, cold)) void resolve_first(void)
{
    pthread_once(&resolve_once, resolve_all);
}

/* Every hook calls this first: after the first time, one load. */
static inline void resolve(void)
{
    if (__builtin_expect(!atomic_load_explicit(&resolved, memory_order_acquire), 0))
        resolve_first();
}

static const char *lookup_env(const char *name)
{
    return getenv(name);
}

static pthread_once_t server_once = PTHREAD_ONCE_INIT;
static void declare_protoset_methods(void); /* with the other declarations, below */

/* Runs when the process first shows it is a gRPC server: only then is there
 * a region, a table of calls, or (at start) a page. */
static void become_server(void)
{
    resolve();
    options_load(&options, lookup_env);
    if (options.disable) {
        log_msg(LOG_INFO, "GRPCPROM_DISABLE is set: passing every call through");
        return;
    }
    const char *version = real_version_string ? real_version_string() : "unknown";
    const struct libgrpc_layout *known = NULL;
    if (options.internals && real_set_completion_queue && real_cq_end_op)
        known = layout_find(version, find_symbol);
    if (known == NULL && (real_gpr_now == NULL || real_request_call == NULL ||
                          real_request_registered_call == NULL || real_cq_next == NULL ||
                          real_cq_pluck == NULL || real_call_ref == NULL || real_call_unref == NULL ||
                          real_cq_cache_flush == NULL)) {
        log_msg(LOG_WARN, "libgrpc core %s lacks functions of the C API grpcprom follows: passing "
                          "every call through, no page", version);
        return;
    }
    gpr_timespec gpr_mono = real_gpr_now(GPR_CLOCK_MONOTONIC);
    gpr_monotonic_offset_ns =
        tracker_now_ns() - (gpr_mono.tv_sec * 1000000000 + gpr_mono.tv_nsec);
    region = attach_region(options.shm, options.buckets, options.bucket_count, options.max_methods);
    if (region == NULL || tracker_init(region, options.max_calls) != 0 ||
        ptrmap_init(&registered, options.max_methods, sizeof(struct registered_method)) != 0 ||
        (known == NULL && surface_init(options.max_calls) != 0)) {
        log_msg(LOG_ERROR, "cannot map the metrics region: counting nothing");
        return;
    }
    /* What the page's grpcprom_build_info says, and the client paths' share
     * of the method table (the last process to attach a shared region
     * writes them: every one writes the same, normally). */
    snprintf(region->grpc_version, sizeof(region->grpc_version), "%s", version);
    snprintf(region->counting_mode, sizeof(region->counting_mode), "%s",
             known ? "internals" : "public_api");
    atomic_store(&region->client_method_limit, options.max_client_methods < region->method_capacity
                                                   ? options.max_client_methods
                                                   : region->method_capacity);
    declare_protoset_methods();
    pthread_atfork(NULL, NULL, tracker_forget_calls);
    if (known == NULL && options.client == CLIENT_ON)
        log_msg(LOG_WARN, "GRPCPROM_CLIENT=on: client calls are counted only through the internals "
                          "of a libgrpc build grpcprom knows: counting none");
    if (known == NULL) {
        log_msg(options.internals ? LOG_WARN : LOG_INFO,
                "%s: counting through gRPC's public C API, which shows every call of C, C++ "
                "asynchronous and Ruby servers; calls published inside gRPC (the C++ synchronous "
                "and callback APIs) are counted only in grpcprom_calls_untracked_total",
                options.internals ? "this libgrpc core is not a build grpcprom knows"
                                  : "GRPCPROM_INTERNALS=0");
        atomic_store_explicit(&surface_mode, true, memory_order_release);
        return;
    }
    atomic_store_explicit(&followed, known, memory_order_release);
    atomic_store_explicit(&layout, known, memory_order_release);
    atomic_store_explicit(&clients_counted, options.client != CLIENT_OFF, memory_order_release);
}

/* The layout that reads the batches of followed calls: non-NULL once a
 * server exists and counting is on, and the tables it fills are visible. */
static inline const struct libgrpc_layout *following(void)
{
    return atomic_load_explicit(&followed, memory_order_acquire);
}

/* The layout new calls are followed with: NULL once a published call did
 * not look as it says (then only calls already followed go on). */
static inline const struct libgrpc_layout *publishing(void)
{
    return atomic_load_explicit(&layout, memory_order_acquire);
}

/* True in the public-API mode, once its tables exist. */
static inline bool surfacing(void)
{
    return atomic_load_explicit(&surface_mode, memory_order_acquire);
}

static bool server_active(void)
{
    pthread_once(&server_once, become_server);
    return following() != NULL || surfacing();
}

/* Declares a method's slot, pre-initialised as go-grpc-prometheus does; a
 * method with no room is counted in the overflow slot of its declared type. */
static struct grpcprom_method *declare_method(const char *path, uint32_t bits)
{
    enum grpcprom_overflow_reason why;
    struct grpcprom_method *m = store_claim(region, GRPCPROM_SERVER, path, strlen(path), &why);
    if (m == NULL) {
        store_overflowed(region, why, 0);
        return grpcprom_region_overflow(region, GRPCPROM_SERVER, bits);
    }
    store_mark_type(m, GRPCPROM_REGISTERED | bits);
    return m;
}

/* Where a registered method's calls go. A destroyed server's handles come
 * back for the next server's methods, so a known handle is pointed anew. */
static void map_handle(grpc_server *server, void *handle, struct grpcprom_method *m)
{
    struct registered_method *r =
        (struct registered_method *)ptrmap_find(&registered, (uintptr_t)handle);
    if (r == NULL) {
        r = (struct registered_method *)ptrmap_claim(&registered, (uintptr_t)handle);
        if (r == NULL) {
            store_overflowed(region, GRPCPROM_OVERFLOW_TABLE_FULL, 0);
            return;
        }
    }
    atomic_store(&r->method, m);
    atomic_store(&r->server, server);
    ptrmap_publish(&r->entry);
}

/* A destroyed server's handles are freed: their entries make room for the
 * methods of servers created later. */
static void forget_handles(grpc_server *server)
{
    for (size_t i = 0; i <= registered.mask; i++) {
        struct registered_method *r = (struct registered_method *)ptrmap_live_entry(&registered, i);
        if (r && atomic_load(&r->server) == server)
            ptrmap_release(&registered, &r->entry);
    }
}

/* A method whose type is declared (a C++ service's, a descriptor set's). */
static void declare_typed_method(const char *path, int streams, void *ctx)
{
    (void)ctx;
    declare_method(path, GRPCPROM_TYPE_EXACT | (uint32_t)streams);
}

/* A descriptor set's method in a process that counts only as a client: its
 * client slot has the declared type, and shows nothing before its first
 * call (no server series for methods the process does not serve). */
static void declare_client_method(const char *path, int streams, void *ctx)
{
    (void)ctx;
    enum grpcprom_overflow_reason why;
    struct grpcprom_method *m = store_claim(region, GRPCPROM_CLIENT, path, strlen(path), &why);
    if (m)
        store_mark_type(m, GRPCPROM_TYPE_EXACT | (uint32_t)streams);
    else
        store_overflowed(region, why, 0);
}

/* A library of the shim's own, from the directory the shim was loaded
 * from (found by name, as the shim was, when that cannot be told); its
 * symbol `symbol`, or NULL with a line on stderr saying why. */
static void *beside_shim(const char *library, const char *symbol, const char *without)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", library);
    Dl_info self;
    if (dladdr((void *)beside_shim, &self) && self.dli_fname) {
        const char *slash = strrchr(self.dli_fname, '/');
        if (slash)
            snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - self.dli_fname), self.dli_fname,
                     library);
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    void *sym = lib ? dlsym(lib, symbol) : NULL;
    if (sym == NULL) { /* dlerror() names the file */
        const char *why = dlerror();
        log_msg(LOG_WARN, "cannot load %s: %s; %s", library, why ? why : path, without);
    }
    return sym;
}

static cxx_service_methods_fn cxx_methods; /* NULL: types come from the calls */
static pthread_once_t cxx_once = PTHREAD_ONCE_INIT;

/* Reading a grpc::Service needs libstdc++, so it lives in a library of its
 * own next to the shim, loaded only here: a C++ server has libstdc++ loaded
 * already, and every other process maps nothing but the shim and libc. */
static void load_cxx_services(void)
{
    *(void **)&cxx_methods = beside_shim(CXX_SERVICES_LIBRARY, CXX_SERVICES_SYMBOL,
                                         "C++ methods get their types from their calls");
}

/* Pre-initialises every method of the descriptor sets GRPCPROM_PROTOSET
 * names, with its declared type; a file that cannot be read is said and
 * skipped. */
static void declare_protoset_methods(void)
{
    if (options.protoset[0] == '\0')
        return;
    protoset_methods_fn methods = (protoset_methods_fn)beside_shim(
        PROTOSET_LIBRARY, PROTOSET_SYMBOL, "GRPCPROM_PROTOSET is not read");
    char files[sizeof(options.protoset)];
    snprintf(files, sizeof(files), "%s", options.protoset);
    char *save = NULL;
    for (char *file = strtok_r(files, ":", &save); methods && file; file = strtok_r(NULL, ":", &save)) {
        char why[200];
        if (methods(file, counting_for_a_client ? declare_client_method : declare_typed_method, NULL,
                    why, sizeof(why)) != 0)
            log_msg(LOG_ERROR, "GRPCPROM_PROTOSET: %s: %s; its methods get their types from "
                               "their calls", file, why);
    }
}

/* True when the declared types of C++ services can be read. */
static bool cxx_types_readable(void)
{
    pthread_once(&cxx_once, load_cxx_services);
    return cxx_methods != NULL;
}

EXPORT void *grpc_server_register_method(grpc_server *server, const char *method, const char *host,
                                         grpc_server_register_method_payload_handling payload,
                                         uint32_t flags)
{
    resolve();
    void *handle = real_register_method(server, method, host, payload, flags);
    if (handle == NULL || method == NULL || !server_active())
        return handle;
    uint32_t bits = payload == GRPC_SRM_PAYLOAD_NONE ? GRPCPROM_CLIENT_STREAMS : 0;
    map_handle(server, handle, declare_method(method, bits));
    return handle;
}

EXPORT void grpc_server_destroy(grpc_server *server)
{
    resolve();
    if (following() != NULL || surfacing())
        forget_handles(server);
    real_server_destroy(server);
}

static void page_bound(const char *listen)
{
    attach_page_bound(region, listen);
}

static const char *page_taken(const char *listen, bool *expected)
{
    return attach_why_taken(region, listen, expected);
}

/* Serves the page, once, when counting is on and a page is wanted. */
static void start_page(void)
{
    if (!server_active() || options.listen[0] == '\0' || atomic_exchange(&page_started, true))
        return;
    struct page_access access;
    options_page_access(&options, &access);
    static const struct page_owner owner = {.bound = page_bound, .why_taken = page_taken};
    page_start(options.listen, region, &access, &owner);
}

EXPORT void grpc_server_start(grpc_server *server)
{
    resolve();
    real_server_start(server);
    start_page();
}

/* grpc::ServerBuilder::RegisterService(grpc::Service*) */
EXPORT void *cxx_builder_register_service(void *builder, void *service)
    __asm__(CXX_REGISTER_SERVICE);
void *cxx_builder_register_service(void *builder, void *service)
{
    resolve();
    if (real_builder_register_service == NULL) /* libgrpc++ was loaded after libgrpc */
        *(void **)&real_builder_register_service = find_symbol(CXX_REGISTER_SERVICE);
    if (service && server_active() && cxx_types_readable())
        cxx_methods(service, declare_typed_method, NULL);
    return real_builder_register_service(builder, service);
}

/* grpc::ServerBuilder::RegisterService(const std::string& host, grpc::Service*) */
EXPORT void *cxx_builder_register_service_host(void *builder, const void *host, void *service)
    __asm__(CXX_REGISTER_SERVICE_HOST);
void *cxx_builder_register_service_host(void *builder, const void *host, void *service)
{
    resolve();
    if (real_builder_register_service_host == NULL)
        *(void **)&real_builder_register_service_host = find_symbol(CXX_REGISTER_SERVICE_HOST);
    if (service && server_active() && cxx_types_readable())
        cxx_methods(service, declare_typed_method, NULL);
    return real_builder_register_service_host(builder, host, service);
}

/* What a batch of a server's call (or a client's, `client`) asks for that
 * its completion will need; false when a server's call needs nothing. */
static inline bool decode_batch(const grpc_op *ops, size_t nops, struct batch_ops *out, bool client)
{
    out->ops = 0;
    for (size_t i = 0; i < nops; i++) {
        switch (ops[i].op) {
        case GRPC_OP_SEND_MESSAGE:
            out->ops |= BATCH_SEND_MESSAGE;
            break;
        case GRPC_OP_SEND_STATUS_FROM_SERVER:
            if (!client) {
                out->ops |= BATCH_SEND_STATUS;
                out->status_code = (int)ops[i].data.send_status_from_server.status;
            }
            break;
        case GRPC_OP_RECV_MESSAGE:
            out->ops |= BATCH_RECV_MESSAGE;
            out->recv_message = (void **)ops[i].data.recv_message.recv_message;
            break;
        case GRPC_OP_RECV_CLOSE_ON_SERVER:
            if (!client) {
                out->ops |= BATCH_RECV_CLOSE;
                out->cancelled = ops[i].data.recv_close_on_server.cancelled;
            }
            break;
        case GRPC_OP_SEND_CLOSE_FROM_CLIENT:
            if (client)
                out->ops |= BATCH_SEND_CLOSE;
            break;
        case GRPC_OP_RECV_STATUS_ON_CLIENT:
            if (client) {
                out->ops |= BATCH_RECV_STATUS;
                out->status = (int *)ops[i].data.recv_status_on_client.status;
            }
            break;
        default:
            break;
        }
    }
    /* A server's message sent alone is counted from its completion. */
    return (out->ops & ~BATCH_SEND_MESSAGE) != 0;
}

/* A server call the public-API mode could not follow starts its batches
 * all the same, and the one with RECV_CLOSE_ON_SERVER (one per call, which
 * every server style sends) counts it, once. */
static void unseen_server_call(const grpc_op *ops, size_t nops)
{
    static atomic_bool said;
    for (size_t i = 0; i < nops; i++)
        if (ops[i].op == GRPC_OP_RECV_CLOSE_ON_SERVER)
            store_untracked(region, &said, "a server call was answered without its request "
                            "passing through grpc_completion_queue_next or _pluck (a callback "
                            "completion queue, or a request made inside gRPC)");
}

/* grpc_call_start_batch in the public-API mode: every batch of a followed
 * call is noted by its tag, for its event to find. Out of line: the other
 * mode's path then saves and restores no more than it needs. */
static __attribute__((noinline)) grpc_call_error surface_start_batch(grpc_call *call,
                                                                     const grpc_op *ops,
                                                                     size_t nops, void *tag,
                                                                     void *reserved)
{
    struct surface_call *c = surface_find(call);
    struct call_record *rec = c ? surface_record(c) : NULL;
    if (c == NULL)
        unseen_server_call(ops, nops);
    if (rec == NULL) /* not followed, or counted apart */
        return real_start_batch(call, ops, nops, tag, reserved);
    struct batch_ops decoded;
    unsigned noted = decode_batch(ops, nops, &decoded, false) ? tracker_batch_submit(rec, &decoded) : 0;
    bool batch_noted = surface_note_batch(tag, c, decoded.ops);
    if (!batch_noted && noted) { /* a tag in use: its event will not be this batch's */
        tracker_batch_refused(rec, noted);
        noted = 0;
    }
    grpc_call_error err = real_start_batch(call, ops, nops, tag, reserved);
    if (err != GRPC_CALL_OK) {
        if (noted)
            tracker_batch_refused(rec, noted);
        if (batch_noted)
            surface_forget_batch(tag);
    }
    return err;
}

/* grpc_call_start_batch on a call that is not a followed server call: a
 * followed client call's batch is noted, every time (its messages are
 * timed); any other goes straight through. Out of line, as the server's
 * path is the one to keep short. */
static __attribute__((noinline)) grpc_call_error client_start_batch(
    const struct libgrpc_layout *known, grpc_call *call, const grpc_op *ops, size_t nops, void *tag,
    void *reserved)
{
    struct call_record *rec = layout_call_record(known, call, tracker_client_destroyed);
    struct batch_ops decoded;
    if (rec == NULL)
        return real_start_batch(call, ops, nops, tag, reserved);
    decode_batch(ops, nops, &decoded, true);
    unsigned noted = decoded.ops ? tracker_client_submit(rec, &decoded) : 0;
    grpc_call_error err = real_start_batch(call, ops, nops, tag, reserved);
    if (err != GRPC_CALL_OK && noted)
        tracker_client_refused(rec, noted);
    return err;
}

/* Flattened, as the completion hook is: the tracker's code is inlined here
 * although the public-API mode calls it too. */
EXPORT __attribute__((flatten)) grpc_call_error grpc_call_start_batch(grpc_call *call,
                                                                      const grpc_op *ops,
                                                                      size_t nops, void *tag,
                                                                      void *reserved)
{
    resolve();
    if (__builtin_expect(surfacing(), 0))
        return surface_start_batch(call, ops, nops, tag, reserved);
    const struct libgrpc_layout *known = following();
    struct call_record *rec;
    struct batch_ops decoded;
    if (known == NULL)
        return real_start_batch(call, ops, nops, tag, reserved);
    if ((rec = layout_call_record(known, call, tracker_call_destroyed)) == NULL)
        return client_start_batch(known, call, ops, nops, tag, reserved);
    if (!decode_batch(ops, nops, &decoded, false))
        return real_start_batch(call, ops, nops, tag, reserved);
    unsigned noted = tracker_batch_submit(rec, &decoded);
    grpc_call_error err = real_start_batch(call, ops, nops, tag, reserved);
    if (err != GRPC_CALL_OK && noted)
        tracker_batch_refused(rec, noted);
    return err;
}

/* Internal: gRPC binds a new server call to its queue just before it
 * publishes the call on the same thread. */
EXPORT void hook_set_completion_queue(grpc_call *call, grpc_completion_queue *cq)
    __asm__(LAYOUT_SET_CQ_SYMBOL);
void hook_set_completion_queue(grpc_call *call, grpc_completion_queue *cq)
{
    resolve();
    bound_call = call;
    real_set_completion_queue(call, cq);
}

/* Converts a gRPC deadline to this shim's clock. A server's deadlines are
 * on gpr's monotonic clock (Server::CallData publishes them so), which
 * differs from ours by a constant; a client's may be on any clock gRPC
 * accepts: the wall clocks cost two clock reads (gpr_now knows no other),
 * a span (GPR_TIMESPAN) runs from now. Before any clock's start (as
 * gpr_inf_past) is long past. */
static inline __attribute__((always_inline)) int64_t deadline_ns(gpr_timespec deadline)
{
    if (deadline.tv_sec > INT64_MAX / 1000000000 - 1000000000) /* centuries away: none */
        return TRACKER_NO_DEADLINE;
    if (deadline.tv_sec < 0)
        return 0;
    int64_t ns = deadline.tv_sec * 1000000000 + deadline.tv_nsec;
    switch (deadline.clock_type) {
    case GPR_CLOCK_MONOTONIC:
        return ns + gpr_monotonic_offset_ns;
    case GPR_TIMESPAN:
        return tracker_now_ns() + ns;
    case GPR_CLOCK_REALTIME:
    case GPR_CLOCK_PRECISE: {
        gpr_timespec now = real_gpr_now(deadline.clock_type);
        return ns + tracker_now_ns() - (now.tv_sec * 1000000000 + now.tv_nsec);
    }
    default:
        return TRACKER_NO_DEADLINE;
    }
}

static struct call_record *call_published(const struct published_call *p)
{
    struct call_start start = {.deadline_ns = TRACKER_NO_DEADLINE};
    if (p->registered_method) {
        struct registered_method *r = (struct registered_method *)ptrmap_find(
            &registered, (uintptr_t)p->registered_method);
        start.method = r ? atomic_load(&r->method) : NULL;
        if (start.method == NULL) /* the handle found no room in the map */
            start.method = grpcprom_region_overflow(region, GRPCPROM_SERVER,
                                                    p->payload ? 0 : GRPCPROM_CLIENT_STREAMS);
        start.registered = true;
        start.first_message_read = p->payload && *p->payload;
    } else {
        start.path = (const char *)GRPC_SLICE_START_PTR(p->details->method);
        start.path_len = GRPC_SLICE_LENGTH(p->details->method);
    }
    if (p->deadline)
        start.deadline_ns = deadline_ns(*p->deadline);
    return tracker_call_started(&start);
}

/* A call whose context slot another part of the process uses is not
 * followed. */
static void slot_taken(void)
{
    static atomic_bool said;
    store_untracked(region, &said, "a server call's context slot is used by another library");
}

/* Follows a call gRPC is handing to the application, unless the request
 * does not look like the known layout: then stop reading gRPC's memory.
 * Kept out of line: the completions of batches, far more frequent, then
 * run with less to save and restore. */
static __attribute__((noinline)) void request_done(const struct libgrpc_layout *known, void *rc, void *tag, void *storage)
{
    struct published_call p;
    enum layout_slot slot;
    if (layout_read_request(known, rc, tag, storage, &p) == 0 && p.call == bound_call &&
        (slot = layout_call_slot(known, p.call)) != LAYOUT_NOT_A_CALL) {
        struct call_record *rec;
        if (slot == LAYOUT_SLOT_TAKEN)
            slot_taken();
        else if ((rec = call_published(&p)) != NULL)
            layout_attach_record(known, p.call, rec, tracker_call_destroyed);
        return;
    }
    atomic_store(&layout, NULL);
    store_add(&region->calls_untracked, 1);
    log_msg(LOG_WARN, "a published call does not match the known libgrpc layout: counting stops");
}

/* A batch of a call that is not a followed server call completes: counted
 * if the call is a followed client call. Out of line, as client_start_batch. */
static __attribute__((noinline)) void client_batch_done(const struct libgrpc_layout *known,
                                                        grpc_call *call, unsigned ops, bool ok)
{
    struct call_record *rec = layout_call_record(known, call, tracker_client_destroyed);
    if (rec)
        tracker_client_done(rec, ops, ok);
}

/* Internal: every completion of every queue passes here, including the one
 * that hands a new server call to the application. */
EXPORT void hook_cq_end_op(grpc_completion_queue *cq, void *tag, void *status,
                           void (*done)(void *, void *), void *done_arg, void *storage,
                           bool internal) __asm__(LAYOUT_END_OP_SYMBOL);
__attribute__((flatten)) void hook_cq_end_op(grpc_completion_queue *cq, void *tag, void *status,
                    void (*done)(void *, void *), void *done_arg, void *storage, bool internal)
{
    resolve();
    const struct libgrpc_layout *known = following();
    if (known) {
        bool ok = layout_status_ok(status);
        grpc_call *call;
        unsigned ops;
        struct call_record *rec;
        if ((void *)done == known->done_request_event) {
            /* A request failed at shutdown carries an error and no call. */
            if (ok && publishing() != NULL)
                request_done(known, done_arg, tag, storage);
        } else if (layout_read_batch(known, done_arg, storage, &call, &ops) && (ops || !ok)) {
            /* a failed batch of any kind ends a server's call (tracker_batch_done) */
            if ((rec = layout_call_record(known, call, tracker_call_destroyed)) != NULL)
                tracker_batch_done(rec, ops, ok);
            else
                client_batch_done(known, call, ops, ok);
        }
    }
    real_cq_end_op(cq, tag, status, done, done_arg, storage, internal);
}

/* ---- the public-API mode (surface.c): requests, events, references */

/* The requests of the public-API mode: noted before gRPC can complete
 * them (on another thread, before the request returns), unless their
 * events or their calls' batches complete through a callback queue. */
static bool surface_request(void *tag, const struct surface_request *where,
                            grpc_completion_queue *cq_bound, grpc_completion_queue *cq_notify)
{
    return where->call && !surface_is_callback_queue(cq_notify) &&
           !surface_is_callback_queue(cq_bound) && surface_note_request(tag, where);
}

static __attribute__((noinline)) grpc_call_error surface_request_call(
    grpc_server *server, grpc_call **call, grpc_call_details *details, grpc_metadata_array *metadata,
    grpc_completion_queue *cq_bound, grpc_completion_queue *cq_notify, void *tag)
{
    bool noted = details && surface_request(tag, &(struct surface_request){.call = call,
                                                                          .details = details},
                                            cq_bound, cq_notify);
    grpc_call_error err = real_request_call(server, call, details, metadata, cq_bound, cq_notify, tag);
    if (err != GRPC_CALL_OK && noted)
        surface_forget_request(tag);
    return err;
}

static __attribute__((noinline)) grpc_call_error surface_request_registered_call(
    grpc_server *server, void *method, grpc_call **call, gpr_timespec *deadline,
    grpc_metadata_array *metadata, grpc_byte_buffer **payload, grpc_completion_queue *cq_bound,
    grpc_completion_queue *cq_notify, void *tag)
{
    bool noted = method && surface_request(tag, &(struct surface_request){.call = call,
                                                                         .registered_method = method,
                                                                         .deadline = deadline,
                                                                         .payload = payload},
                                           cq_bound, cq_notify);
    grpc_call_error err = real_request_registered_call(server, method, call, deadline, metadata,
                                                       payload, cq_bound, cq_notify, tag);
    if (err != GRPC_CALL_OK && noted)
        surface_forget_request(tag);
    return err;
}

EXPORT grpc_call_error grpc_server_request_call(grpc_server *server, grpc_call **call,
                                                grpc_call_details *details,
                                                grpc_metadata_array *metadata,
                                                grpc_completion_queue *cq_bound,
                                                grpc_completion_queue *cq_notify, void *tag)
{
    if (__builtin_expect(surfacing(), 0))
        return surface_request_call(server, call, details, metadata, cq_bound, cq_notify, tag);
    resolve();
    return real_request_call(server, call, details, metadata, cq_bound, cq_notify, tag);
}

EXPORT grpc_call_error grpc_server_request_registered_call(
    grpc_server *server, void *method, grpc_call **call, gpr_timespec *deadline,
    grpc_metadata_array *metadata, grpc_byte_buffer **payload, grpc_completion_queue *cq_bound,
    grpc_completion_queue *cq_notify, void *tag)
{
    if (__builtin_expect(surfacing(), 0))
        return surface_request_registered_call(server, method, call, deadline, metadata, payload,
                                               cq_bound, cq_notify, tag);
    resolve();
    return real_request_registered_call(server, method, call, deadline, metadata, payload,
                                        cq_bound, cq_notify, tag);
}

/* A call the public-API mode can no longer follow ends as gRPC
 * destroying it does in the other mode. */
static void surface_ended(bool ended, struct call_record *rec)
{
    if (ended && rec)
        tracker_call_destroyed(rec);
}

/* An event the application is about to get: a requested call published,
 * or a batch of a followed call done. */
static __attribute__((noinline)) void surface_event(void *tag, bool success)
{
    struct published_call p;
    unsigned ops;
    struct surface_call *c;
    struct call_record *rec;
    if (surface_take_request(tag, &p)) {
        if (!success || p.call == NULL)
            return;
        /* NULL when the call table is full (counted there): followed all
         * the same, so that its batches do not count it again. */
        rec = call_published(&p);
        if (!surface_follow(p.call, rec))
            surface_ended(true, rec); /* twice the records fit: never, in practice */
    } else if ((c = surface_take_batch(tag, &ops)) != NULL) {
        if ((rec = surface_record(c)) != NULL)
            tracker_batch_done(rec, ops, success);
        bool ended = surface_batch_done(c, &rec);
        surface_ended(ended, rec);
    }
}

/* next and pluck in the public-API mode: the event is seen before the
 * application gets it. Out of line, so that the other mode's hooks are a
 * check and a jump. */
static __attribute__((noinline)) grpc_event surface_next(grpc_completion_queue *cq,
                                                         gpr_timespec deadline, void *reserved)
{
    grpc_event ev = real_cq_next(cq, deadline, reserved);
    if (ev.type == GRPC_OP_COMPLETE)
        surface_event(ev.tag, ev.success);
    return ev;
}

static __attribute__((noinline)) grpc_event surface_pluck(grpc_completion_queue *cq, void *tag,
                                                          gpr_timespec deadline, void *reserved)
{
    grpc_event ev = real_cq_pluck(cq, tag, deadline, reserved);
    if (ev.type == GRPC_OP_COMPLETE)
        surface_event(ev.tag, ev.success);
    return ev;
}

/* The public-API mode is set only after everything is resolved: the
 * public path needs no resolve() of its own. */
EXPORT grpc_event grpc_completion_queue_next(grpc_completion_queue *cq, gpr_timespec deadline,
                                             void *reserved)
{
    if (__builtin_expect(surfacing(), 0))
        return surface_next(cq, deadline, reserved);
    resolve();
    return real_cq_next(cq, deadline, reserved);
}

EXPORT grpc_event grpc_completion_queue_pluck(grpc_completion_queue *cq, void *tag,
                                              gpr_timespec deadline, void *reserved)
{
    if (__builtin_expect(surfacing(), 0))
        return surface_pluck(cq, tag, deadline, reserved);
    resolve();
    return real_cq_pluck(cq, tag, deadline, reserved);
}

/* Callback queues are noted in the public-API mode alone, so that a process
 * that is no server (a client of the callback API) gets no table. One made
 * before the mode is known (a C server's, made before its first method
 * registers) is missed: the requests on it wait in the table, and its
 * calls, never followed, are counted untracked at their close. */
EXPORT grpc_completion_queue *grpc_completion_queue_create(
    const grpc_completion_queue_factory *factory, const grpc_completion_queue_attributes *attributes,
    void *reserved)
{
    resolve();
    grpc_completion_queue *cq = real_cq_create(factory, attributes, reserved);
    if (cq && attributes && attributes->cq_completion_type == GRPC_CQ_CALLBACK && surfacing())
        surface_callback_queue(cq, true);
    return cq;
}

EXPORT grpc_completion_queue *grpc_completion_queue_create_for_callback(
    grpc_completion_queue_functor *functor, void *reserved)
{
    resolve();
    grpc_completion_queue *cq = real_cq_create_for_callback(functor, reserved);
    if (cq && surfacing())
        surface_callback_queue(cq, true);
    return cq;
}

static __attribute__((noinline)) void surface_cq_destroy(grpc_completion_queue *cq)
{
    surface_callback_queue(cq, false);
    real_cq_destroy(cq);
}

EXPORT void grpc_completion_queue_destroy(grpc_completion_queue *cq)
{
    if (__builtin_expect(surfacing(), 0)) {
        surface_cq_destroy(cq);
        return;
    }
    resolve();
    real_cq_destroy(cq);
}

static __attribute__((noinline)) void surface_call_ref(grpc_call *call)
{
    surface_ref(call);
    real_call_ref(call);
}

EXPORT void grpc_call_ref(grpc_call *call)
{
    if (__builtin_expect(surfacing(), 0)) {
        surface_call_ref(call);
        return;
    }
    resolve();
    real_call_ref(call);
}

/* The application's last reference ends the call for the public-API mode
 * (once no batch of it waits for its event), as gRPC destroying it does
 * for the other: settled with its status if it sent one, else as
 * cancelled. */
static __attribute__((noinline)) void surface_call_unref(grpc_call *call)
{
    struct call_record *rec;
    bool ended = surface_unref(call, &rec);
    surface_ended(ended, rec);
    real_call_unref(call);
}

EXPORT void grpc_call_unref(grpc_call *call)
{
    if (__builtin_expect(surfacing(), 0)) {
        surface_call_unref(call);
        return;
    }
    resolve();
    real_call_unref(call);
}

/* C++'s DoThenAsyncNext hands an event over through the thread's cache,
 * past next and pluck: it is an event all the same. */
static __attribute__((noinline)) int surface_cache_flush(grpc_completion_queue *cq, void **tag,
                                                         int *ok)
{
    int flushed = real_cq_cache_flush(cq, tag, ok);
    if (flushed)
        surface_event(*tag, *ok != 0);
    return flushed;
}

EXPORT int grpc_completion_queue_thread_local_cache_flush(grpc_completion_queue *cq, void **tag,
                                                          int *ok)
{
    if (__builtin_expect(surfacing(), 0))
        return surface_cache_flush(cq, tag, ok);
    resolve();
    return real_cq_cache_flush(cq, tag, ok);
}

/* A server that cancels a call with a status of its choosing (C++ does,
 * with Internal, for a request it cannot parse) sends the client that
 * status: it is the call's, in either mode. */
EXPORT grpc_call_error grpc_call_cancel_with_status(grpc_call *call, grpc_status_code status,
                                                    const char *description, void *reserved)
{
    resolve();
    const struct libgrpc_layout *known = following();
    struct surface_call *c;
    struct call_record *rec = NULL;
    if (known)
        rec = layout_call_record(known, call, tracker_call_destroyed);
    else if (surfacing() && (c = surface_find(call)) != NULL)
        rec = surface_record(c);
    if (rec)
        tracker_call_cancelled(rec, (int)status);
    return real_cancel_with_status(call, status, description, reserved);
}

/* ---- calls the process makes as a client */

static pthread_once_t client_wish_once = PTHREAD_ONCE_INIT;

/* GRPCPROM_CLIENT=on: a process's first client call makes it count, and
 * serve its page, as a server's start does. */
static void read_client_wish(void)
{
    if (options_client(lookup_env) == CLIENT_ON) {
        counting_for_a_client = true;
        start_page();
    }
}

/* True when client calls are counted: once the process serves (auto, on),
 * or from its first client call (on). */
static bool counting_clients(void)
{
    if (__builtin_expect(!atomic_load_explicit(&clients_counted, memory_order_acquire), 0))
        pthread_once(&client_wish_once, read_client_wish);
    return atomic_load_explicit(&clients_counted, memory_order_acquire);
}

/* Follows a call the process just created as a client, before the
 * application has it: a call gRPC made of another kind, or whose slot
 * another library uses, is counted untracked. */
static void client_call_created(const struct libgrpc_layout *known, grpc_call *call,
                                const grpc_slice *path, gpr_timespec deadline)
{
    enum layout_slot slot = layout_call_slot(known, call);
    if (slot != LAYOUT_SLOT_FREE) {
        static atomic_bool said;
        store_untracked(region, &said, slot == LAYOUT_SLOT_TAKEN
                                           ? "a client call's context slot is used by another library"
                                           : "a client call is not of the kind grpcprom knows");
        return;
    }
    struct call_record *rec = tracker_client_started((const char *)GRPC_SLICE_START_PTR(*path),
                                                     GRPC_SLICE_LENGTH(*path), deadline_ns(deadline));
    if (rec)
        layout_attach_record(known, call, rec, tracker_client_destroyed);
}

EXPORT grpc_call *grpc_channel_create_call(grpc_channel *channel, grpc_call *parent_call,
                                           uint32_t propagation_mask,
                                           grpc_completion_queue *completion_queue,
                                           grpc_slice method, const grpc_slice *host,
                                           gpr_timespec deadline, void *reserved)
{
    resolve();
    grpc_call *call = real_channel_create_call(channel, parent_call, propagation_mask,
                                               completion_queue, method, host, deadline, reserved);
    const struct libgrpc_layout *known;
    if (call && counting_clients() && (known = publishing()) != NULL)
        client_call_created(known, call, &method, deadline);
    return call;
}

EXPORT grpc_call *grpc_channel_create_registered_call(grpc_channel *channel, grpc_call *parent_call,
                                                      uint32_t propagation_mask,
                                                      grpc_completion_queue *completion_queue,
                                                      void *registered_call_handle,
                                                      gpr_timespec deadline, void *reserved)
{
    resolve();
    grpc_call *call = real_channel_create_registered_call(
        channel, parent_call, propagation_mask, completion_queue, registered_call_handle, deadline,
        reserved);
    const struct libgrpc_layout *known;
    if (call && registered_call_handle && counting_clients() && (known = publishing()) != NULL) {
        grpc_slice path = layout_registered_path(known, registered_call_handle);
        client_call_created(known, call, &path, deadline);
    }
    return call;
}
