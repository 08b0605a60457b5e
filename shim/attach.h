/* attach.h: the region this process counts in, and who serves its page. */
#ifndef GRPCPROM_ATTACH_H
#define GRPCPROM_ATTACH_H

#include <stdbool.h>

#include "region.h"

/* The region to count in: the one named `name` (GRPCPROM_SHM), shared with
 * every process that names it, whose settings win over the ones given here
 * (said on stderr when they differ); with no name, a region file of this
 * process's own, removed when it exits normally. Where no file can be used
 * (said once), anonymous memory that only forked children share. NULL only
 * when no memory can be had at all. */
struct grpcprom_header *attach_region(const char *name, const double *bounds,
                                      unsigned bucket_count, unsigned method_capacity);

/* This process serves the region's page on `listen`: recorded in the
 * region, for `grpcprom ls` and for processes that find the address taken. */
void attach_page_bound(struct grpcprom_header *region, const char *listen);

/* Why the page address `listen` is taken, when a grpcprom process holds it:
 * a process counting in the same region (*sibling: nothing is wrong), or
 * one counting in a region of its own (the hint says what to set). NULL
 * when no grpcprom process says it serves there. */
const char *attach_why_taken(const struct grpcprom_header *region, const char *listen,
                             bool *sibling);

#endif
