/* surface.c: the tables of the public-API mode (see surface.h). Each is a
 * ptrmap: requests and batches by tag, from the moment the application
 * hands them to gRPC to the event that completes them; calls by address,
 * from their publication until the application's last reference is gone
 * and no batch of theirs waits for its event. */
#include "surface.h"

#include <pthread.h>
#include <stdatomic.h>

#include "ptrmap.h"

struct requested {
    struct ptrmap_entry entry;      /* key: the tag */
    struct surface_request where;
};

struct surface_call {
    struct ptrmap_entry entry;      /* key: the call; 0 once the application let go */
    struct call_record *rec;
    _Atomic int32_t refs;           /* the application's references */
    _Atomic int32_t holds;          /* batches waiting, plus one while refs > 0 */
};

struct batch {
    struct ptrmap_entry entry;      /* key: the tag */
    struct surface_call *call;
    unsigned ops;
};

static struct ptrmap requests, calls, batches, callback_queues;
static pthread_once_t callback_queues_once = PTHREAD_ONCE_INIT;

#define MAX_CALLBACK_QUEUES 4096
#define BATCHES_PER_CALL 4 /* of kinds gRPC runs at once on a server call, at most */

int surface_init(size_t max_calls)
{
    int err = ptrmap_init(&requests, max_calls, sizeof(struct requested));
    if (err == 0) /* calls without a record too: twice the records */
        err = ptrmap_init(&calls, 2 * max_calls, sizeof(struct surface_call));
    if (err == 0)
        err = ptrmap_init(&batches, max_calls * BATCHES_PER_CALL, sizeof(struct batch));
    return err;
}

/* The table of callback queues is made at the first one noted. */
static void init_callback_queues(void)
{
    ptrmap_init(&callback_queues, MAX_CALLBACK_QUEUES, sizeof(struct ptrmap_entry));
}

void surface_callback_queue(grpc_completion_queue *cq, bool is_callback)
{
    pthread_once(&callback_queues_once, init_callback_queues);
    if (callback_queues.entries == NULL)
        return;
    struct ptrmap_entry *e = ptrmap_find(&callback_queues, (uintptr_t)cq);
    if (e && !is_callback)
        ptrmap_release(&callback_queues, e);
    else if (!e && is_callback && (e = ptrmap_claim(&callback_queues, (uintptr_t)cq)) != NULL)
        ptrmap_publish(e);
}

bool surface_is_callback_queue(grpc_completion_queue *cq)
{
    pthread_once(&callback_queues_once, init_callback_queues);
    return callback_queues.entries && ptrmap_find(&callback_queues, (uintptr_t)cq) != NULL;
}

/* A tag already in use names another outstanding operation: not followed. */
static struct ptrmap_entry *claim_tag(struct ptrmap *map, void *tag)
{
    if (ptrmap_find(map, (uintptr_t)tag) != NULL)
        return NULL;
    return ptrmap_claim(map, (uintptr_t)tag);
}

bool surface_note_request(void *tag, const struct surface_request *where)
{
    struct requested *r = (struct requested *)claim_tag(&requests, tag);
    if (r == NULL)
        return false;
    r->where = *where;
    ptrmap_publish(&r->entry);
    return true;
}

void surface_forget_request(void *tag)
{
    struct ptrmap_entry *e = ptrmap_find(&requests, (uintptr_t)tag);
    if (e)
        ptrmap_take(&requests, e);
}

bool surface_take_request(void *tag, struct published_call *out)
{
    struct requested *r = (struct requested *)ptrmap_find(&requests, (uintptr_t)tag);
    if (r == NULL)
        return false;
    struct surface_request where = r->where;
    if (!ptrmap_take(&requests, &r->entry))
        return false; /* another thread's event of the same tag took it */
    out->call = *where.call;
    out->registered_method = where.registered_method;
    out->details = where.details;
    out->deadline = where.registered_method ? where.deadline : &where.details->deadline;
    out->payload = where.payload;
    return true;
}

bool surface_follow(grpc_call *call, struct call_record *rec)
{
    struct surface_call *c = (struct surface_call *)ptrmap_claim(&calls, (uintptr_t)call);
    if (c == NULL)
        return false;
    c->rec = rec;
    atomic_store_explicit(&c->refs, 1, memory_order_relaxed);
    atomic_store_explicit(&c->holds, 1, memory_order_relaxed);
    ptrmap_publish(&c->entry);
    return true;
}

struct surface_call *surface_find(grpc_call *call)
{
    return (struct surface_call *)ptrmap_find(&calls, (uintptr_t)call);
}

struct call_record *surface_record(const struct surface_call *c)
{
    return c->rec;
}

bool surface_note_batch(void *tag, struct surface_call *c, unsigned ops)
{
    struct batch *b = (struct batch *)claim_tag(&batches, tag);
    if (b == NULL)
        return false;
    b->call = c;
    b->ops = ops;
    atomic_fetch_add_explicit(&c->holds, 1, memory_order_relaxed);
    ptrmap_publish(&b->entry);
    return true;
}

/* Drops one hold of a call; on its last, the call's entry goes. */
static bool let_go(struct surface_call *c, struct call_record **rec)
{
    if (atomic_fetch_sub_explicit(&c->holds, 1, memory_order_acq_rel) != 1)
        return false;
    *rec = c->rec;
    ptrmap_release(&calls, &c->entry);
    return true;
}

void surface_forget_batch(void *tag)
{
    struct batch *b = (struct batch *)ptrmap_find(&batches, (uintptr_t)tag);
    struct surface_call *c = b ? b->call : NULL;
    struct call_record *rec;
    if (b && ptrmap_take(&batches, &b->entry))
        let_go(c, &rec); /* never its last: the application holds the call */
}

struct surface_call *surface_take_batch(void *tag, unsigned *ops)
{
    struct batch *b = (struct batch *)ptrmap_find(&batches, (uintptr_t)tag);
    if (b == NULL)
        return NULL;
    struct surface_call *c = b->call;
    *ops = b->ops;
    return ptrmap_take(&batches, &b->entry) ? c : NULL;
}

bool surface_batch_done(struct surface_call *c, struct call_record **rec)
{
    return let_go(c, rec);
}

void surface_ref(grpc_call *call)
{
    struct surface_call *c = surface_find(call);
    if (c)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

/* The application's last reference hides the entry at once (a new call at
 * the same address is another), and drops the hold it had. */
bool surface_unref(grpc_call *call, struct call_record **rec)
{
    struct surface_call *c = surface_find(call);
    if (c == NULL || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return false;
    ptrmap_hide(&c->entry);
    return let_go(c, rec);
}
