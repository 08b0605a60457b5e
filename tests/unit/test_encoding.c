/* test_encoding.c: what Accept-Encoding headers ask of the page. */
#include "check.h"
#include "encoding.h"

/* Whether a request with these Accept-Encoding headers (NULL-terminated)
 * gets the gzip page. */
static bool gzip_for(const char *const *headers)
{
    struct codings c = CODINGS_NONE;
    for (; *headers != NULL; headers++)
        encoding_fold(*headers, &c);
    return encoding_wants_gzip(&c);
}

#define WANTS(...) gzip_for((const char *const[]){__VA_ARGS__, NULL})

int main(void)
{
    /* What Prometheus and curl --compressed send, and their spellings. */
    CHECK(WANTS("gzip"));
    CHECK(WANTS("gzip, deflate, br"));
    CHECK(WANTS("GZIP"));
    CHECK(WANTS("x-gzip"));
    CHECK(WANTS("  deflate ,gzip ;  q=0.5"));
    CHECK(WANTS("*"));
    CHECK(!WANTS(""));
    CHECK(!WANTS("deflate, br"));

    /* Weights: q=0 refuses; identity competes only when named (or by *). */
    CHECK(!WANTS("gzip;q=0"));
    CHECK(!WANTS("gzip;q=0.000"));
    CHECK(WANTS("gzip;q=0.001"));
    CHECK(WANTS("gzip;Q=1.000"));
    CHECK(!WANTS("identity;q=1, gzip;q=0.9"));
    CHECK(WANTS("identity;q=0.5, gzip;q=0.9"));
    CHECK(!WANTS("gzip;q=0, *"));   /* a named coding beats * */
    CHECK(WANTS("*;q=0.5, identity;q=0.2"));
    CHECK(!WANTS("*;q=0"));

    /* Malformed weights make the entry count as not sent. */
    CHECK(!WANTS("gzip;q=1.5"));
    CHECK(!WANTS("gzip;q=0.0001"));
    CHECK(!WANTS("gzip;q=.5"));
    CHECK(!WANTS("gzip;q="));
    CHECK(!WANTS("gzip junk"));
    CHECK(WANTS("gzip;level=9"));     /* another parameter: ignored */

    /* Several headers fold into one list; a coding named twice keeps its
     * highest weight. */
    CHECK(WANTS("deflate", "gzip"));
    CHECK(!WANTS("gzip;q=0", "identity"));
    CHECK(WANTS("gzip;q=0", "gzip;q=0.3"));

    /* Nothing in a hostile value makes the weights leave their range. */
    struct codings c = CODINGS_NONE;
    encoding_fold(";;;,,,;q=1;q=0,=;,gzip;q=1;q=0;q=1,*;q=;", &c);
    CHECK(c.gzip >= -1 && c.gzip <= 1000 && c.any >= -1 && c.any <= 1000);
    CHECK_DONE();
}
