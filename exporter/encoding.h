/* encoding.h: what a client's Accept-Encoding headers ask of the page. */
#ifndef GRPCPROM_ENCODING_H
#define GRPCPROM_ENCODING_H

#include <stdbool.h>

/* The weights of Accept-Encoding, in thousandths; -1 where not named. */
struct codings {
    int gzip, identity, any;
};

#define CODINGS_NONE ((struct codings){-1, -1, -1})

/* Folds one Accept-Encoding value into *c (RFC 9110 12.5.3: a list of
 * codings, case-insensitive, each with an optional ";q=" weight; x-gzip is
 * gzip). A malformed entry counts as not sent; a coding named twice keeps
 * its highest weight. Every header of a request folds into one *c, as if
 * the values were joined by commas. */
void encoding_fold(const char *value, struct codings *c);

/* Whether to answer gzip: the client accepts it (named, or through "*",
 * with q > 0) at least as much as it accepts the plain page. */
bool encoding_wants_gzip(const struct codings *c);

#endif
