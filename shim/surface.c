/* surface.c: the tables of the public-API mode (see surface.h). Each is a
 * ptrmap: requests and batches by tag, from the moment the application
 * hands them to gRPC to the event that completes them; calls by address,
 * from their publication to the application's last reference. */
#include "surface.h"

#include <stdatomic.h>

#include "ptrmap.h"

struct requested {
    struct ptrmap_entry entry;      /* key: the tag */
    struct surface_request where;
};

struct followed {
    struct ptrmap_entry entry;      /* key: the call */
    struct call_record *rec;
    uint64_t serial;
    _Atomic int32_t refs;           /* the application's */
};

struct batch {
    struct ptrmap_entry entry;      /* key: the tag */
    grpc_call *call;
    uint64_t serial;
    unsigned ops;
};

static struct ptrmap requests, calls, batches, callback_queues;
static _Atomic uint64_t next_serial;

#define MAX_CALLBACK_QUEUES 4096
#define BATCHES_PER_CALL 4 /* of kinds gRPC runs at once on a server call, at most */

int surface_init(size_t max_calls)
{
    int err = ptrmap_init(&requests, max_calls, sizeof(struct requested));
    if (err == 0)
        err = ptrmap_init(&calls, max_calls, sizeof(struct followed));
    if (err == 0)
        err = ptrmap_init(&batches, max_calls * BATCHES_PER_CALL, sizeof(struct batch));
    if (err == 0)
        err = ptrmap_init(&callback_queues, MAX_CALLBACK_QUEUES, sizeof(struct ptrmap_entry));
    return err;
}

void surface_callback_queue(grpc_completion_queue *cq, bool is_callback)
{
    struct ptrmap_entry *e = ptrmap_find(&callback_queues, (uintptr_t)cq);
    if (e && !is_callback)
        ptrmap_release(&callback_queues, e);
    else if (!e && is_callback && (e = ptrmap_claim(&callback_queues, (uintptr_t)cq)) != NULL)
        ptrmap_publish(e);
}

bool surface_is_callback_queue(grpc_completion_queue *cq)
{
    return ptrmap_find(&callback_queues, (uintptr_t)cq) != NULL;
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
        ptrmap_release(&requests, e);
}

bool surface_take_request(void *tag, struct published_call *out)
{
    struct requested *r = (struct requested *)ptrmap_find(&requests, (uintptr_t)tag);
    if (r == NULL)
        return false;
    struct surface_request where = r->where;
    ptrmap_release(&requests, &r->entry);
    out->call = *where.call;
    out->registered_method = where.registered_method;
    out->details = where.details;
    out->deadline = where.registered_method ? where.deadline : &where.details->deadline;
    out->payload = where.payload;
    return true;
}

void surface_follow(grpc_call *call, struct call_record *rec)
{
    /* Records and followed calls are as many: a call with a record fits. */
    struct followed *f = (struct followed *)ptrmap_claim(&calls, (uintptr_t)call);
    if (f == NULL)
        return;
    f->rec = rec;
    f->serial = atomic_fetch_add_explicit(&next_serial, 1, memory_order_relaxed);
    atomic_store_explicit(&f->refs, 1, memory_order_relaxed);
    ptrmap_publish(&f->entry);
}

struct call_record *surface_record(grpc_call *call, uint64_t *serial)
{
    struct followed *f = (struct followed *)ptrmap_find(&calls, (uintptr_t)call);
    if (f == NULL)
        return NULL;
    *serial = f->serial;
    return f->rec;
}

bool surface_note_batch(void *tag, grpc_call *call, uint64_t serial, unsigned ops)
{
    struct batch *b = (struct batch *)claim_tag(&batches, tag);
    if (b == NULL)
        return false;
    b->call = call;
    b->serial = serial;
    b->ops = ops;
    ptrmap_publish(&b->entry);
    return true;
}

void surface_forget_batch(void *tag)
{
    struct ptrmap_entry *e = ptrmap_find(&batches, (uintptr_t)tag);
    if (e)
        ptrmap_release(&batches, e);
}

struct call_record *surface_take_batch(void *tag, unsigned *ops)
{
    struct batch *b = (struct batch *)ptrmap_find(&batches, (uintptr_t)tag);
    if (b == NULL)
        return NULL;
    grpc_call *call = b->call;
    uint64_t serial = b->serial, now;
    *ops = b->ops;
    ptrmap_release(&batches, &b->entry);
    struct call_record *rec = surface_record(call, &now);
    return rec && now == serial ? rec : NULL;
}

void surface_ref(grpc_call *call)
{
    struct followed *f = (struct followed *)ptrmap_find(&calls, (uintptr_t)call);
    if (f)
        atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

struct call_record *surface_unref(grpc_call *call)
{
    struct followed *f = (struct followed *)ptrmap_find(&calls, (uintptr_t)call);
    if (f == NULL || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return NULL;
    struct call_record *rec = f->rec;
    ptrmap_release(&calls, &f->entry);
    return rec;
}
