/* encoding.c: reads Accept-Encoding, which any client can send. */
#include "encoding.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

/* A qvalue ("0" to "1", at most three decimals) in thousandths; -1 if malformed. */
static int qvalue(const char *s, size_t len)
{
    if (len == 0 || len > 5 || (s[0] != '0' && s[0] != '1') || (len > 1 && s[1] != '.'))
        return -1;
    int q = (s[0] - '0') * 1000;
    for (size_t i = 2, scale = 100; i < len; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        q += (int)((size_t)(s[i] - '0') * scale);
    }
    return q <= 1000 ? q : -1;
}

/* Whether s[0..len) is the token `word`, which HTTP compares case-insensitively. */
static bool token_is(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && strncasecmp(s, word, len) == 0;
}

void encoding_fold(const char *s, struct codings *c)
{
    while (*s != '\0') {
        s += strspn(s, " \t,");
        const char *name = s;
        size_t name_len = strcspn(s, " \t,;");
        s += name_len;
        int q = 1000;
        for (s += strspn(s, " \t"); *s == ';'; s += strspn(s, " \t")) {
            s += 1 + strspn(s + 1, " \t");
            size_t len = strcspn(s, " \t,;");
            if (q >= 0 && len >= 2 && (s[0] == 'q' || s[0] == 'Q') && s[1] == '=')
                q = qvalue(s + 2, len - 2);
            s += len;
        }
        if (*s != ',' && *s != '\0') { /* more after the entry: not one */
            q = -1;
            s += strcspn(s, ",");
        }
        int *weight = token_is(name, name_len, "gzip") || token_is(name, name_len, "x-gzip")
                          ? &c->gzip
                      : token_is(name, name_len, "identity") ? &c->identity
                      : token_is(name, name_len, "*")        ? &c->any
                                                             : NULL;
        if (weight != NULL && q > *weight)
            *weight = q;
    }
}

/* Not naming identity (nor "*") leaves the plain page at weight 0: any
 * weight for gzip then wins, as a scraper that sends only "gzip" wants. */
bool encoding_wants_gzip(const struct codings *c)
{
    int gzip = c->gzip >= 0 ? c->gzip : c->any >= 0 ? c->any : 0;
    int identity = c->identity >= 0 ? c->identity : c->any >= 0 ? c->any : 0;
    return gzip > 0 && gzip >= identity;
}
