/* test_options.c: every GRPCPROM_* setting, good and bad values. */
#include <math.h>
#include <stddef.h>

#include "check.h"
#include "options.h"

static const char *env_names[8], *env_values[8];
static int env_count;

static const char *fake_env(const char *name)
{
    for (int i = 0; i < env_count; i++)
        if (strcmp(env_names[i], name) == 0)
            return env_values[i];
    return NULL;
}

static void load_with(struct options *o, const char *name, const char *value)
{
    env_count = 0;
    if (name) {
        env_names[0] = name;
        env_values[0] = value;
        env_count = 1;
    }
    options_load(o, fake_env);
}

int main(void)
{
    struct options o;
    load_with(&o, NULL, NULL);
    CHECK_STR(o.listen, "0.0.0.0:9091");
    CHECK_INT(o.bucket_count, 11);
    CHECK(o.buckets[0] == 0.005 && o.buckets[10] == 10);
    CHECK_INT(o.disable, 0);
    CHECK_INT(o.log_level, LOG_WARN);
    CHECK_INT(o.max_methods, 1000);

    load_with(&o, "GRPCPROM_LISTEN", "127.0.0.1:9500");
    CHECK_STR(o.listen, "127.0.0.1:9500");
    load_with(&o, "GRPCPROM_LISTEN", "9600");
    CHECK_STR(o.listen, "0.0.0.0:9600");
    load_with(&o, "GRPCPROM_LISTEN", "none");
    CHECK_STR(o.listen, "");
    const char *bad_listens[] = {"", "localhost:80", "1.2.3.4:0", "1.2.3.4:65536", ":80",
                                 "1.2.3.4:", "1.2.3.4:8x", "[::1]:80", "abc"};
    for (size_t i = 0; i < sizeof(bad_listens) / sizeof(bad_listens[0]); i++) {
        load_with(&o, "GRPCPROM_LISTEN", bad_listens[i]);
        CHECK_STR(o.listen, "0.0.0.0:9091");
    }

    load_with(&o, "GRPCPROM_BUCKETS", "0.1,1,10");
    CHECK_INT(o.bucket_count, 3);
    CHECK(o.buckets[0] == 0.1 && o.buckets[2] == 10);
    const char *bad_buckets[] = {"", "1,1", "2,1", "-1", "0", "1,,2", "1,x", "inf", "nan", "1,"};
    for (size_t i = 0; i < sizeof(bad_buckets) / sizeof(bad_buckets[0]); i++) {
        load_with(&o, "GRPCPROM_BUCKETS", bad_buckets[i]);
        CHECK_INT(o.bucket_count, 11);
    }
    char many[256] = "1";
    for (int i = 2; i <= GRPCPROM_MAX_BUCKETS + 1; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), ",%d", i);
    load_with(&o, "GRPCPROM_BUCKETS", many);
    CHECK_INT(o.bucket_count, 11);

    load_with(&o, "GRPCPROM_DISABLE", "1");
    CHECK_INT(o.disable, 1);
    load_with(&o, "GRPCPROM_DISABLE", "TRUE");
    CHECK_INT(o.disable, 1);
    load_with(&o, "GRPCPROM_DISABLE", "maybe");
    CHECK_INT(o.disable, 0);

    /* GRPCPROM_CLIENT: auto by default and for a bad value; read alone too. */
    load_with(&o, NULL, NULL);
    CHECK_INT(o.client, CLIENT_AUTO);
    load_with(&o, "GRPCPROM_CLIENT", "on");
    CHECK_INT(o.client, CLIENT_ON);
    CHECK_INT(options_client(fake_env), CLIENT_ON);
    load_with(&o, "GRPCPROM_CLIENT", "off");
    CHECK_INT(o.client, CLIENT_OFF);
    CHECK_INT(options_client(fake_env), CLIENT_OFF);
    load_with(&o, "GRPCPROM_CLIENT", "yes");
    CHECK_INT(o.client, CLIENT_AUTO);
    CHECK_INT(options_client(fake_env), CLIENT_AUTO);
    CHECK(options_check("GRPCPROM_CLIENT", "ON") != NULL);
    load_with(&o, NULL, NULL);
    CHECK_INT(o.max_client_methods, 100);
    load_with(&o, "GRPCPROM_MAX_CLIENT_METHODS", "7");
    CHECK_INT(o.max_client_methods, 7);
    load_with(&o, "GRPCPROM_MAX_CLIENT_METHODS", "0");
    CHECK_INT(o.max_client_methods, 100);

    load_with(&o, "GRPCPROM_LOG", "debug");
    CHECK_INT(o.log_level, LOG_DEBUG);
    load_with(&o, "GRPCPROM_LOG", "loud");
    CHECK_INT(o.log_level, LOG_WARN);

    /* Counts: digits only, within their range; else the default. */
    static const struct {
        const char *name, *text;
        size_t field;
        unsigned want;
    } counts[] = {
        {"GRPCPROM_MAX_METHODS", "20", offsetof(struct options, max_methods), 20},
        {"GRPCPROM_MAX_METHODS", "0", offsetof(struct options, max_methods), 1000},
        {"GRPCPROM_MAX_METHODS", "12abc", offsetof(struct options, max_methods), 1000},
        {"GRPCPROM_MAX_METHODS", "+20", offsetof(struct options, max_methods), 1000},
        {"GRPCPROM_MAX_CALLS", "100000", offsetof(struct options, max_calls), 100000},
        {"GRPCPROM_MAX_CALLS", "1000001", offsetof(struct options, max_calls), 16384},
        {"GRPCPROM_MAX_CALLS", " 5", offsetof(struct options, max_calls), 16384},
    };
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        load_with(&o, counts[i].name, counts[i].text);
        CHECK_INT(*(unsigned *)((char *)&o + counts[i].field), counts[i].want);
    }

    /* Access settings: a bad one refuses everyone rather than open the page. */
    load_with(&o, "GRPCPROM_ALLOW", "-0.0.0.0/0,+10.0.0.0/8");
    CHECK_INT(o.allow.count, 2);
    CHECK(!o.refuse_everyone);
    load_with(&o, "GRPCPROM_ALLOW", "10.0.0.0/8");
    CHECK_INT(o.allow.count, 0);
    CHECK(o.refuse_everyone);
    load_with(&o, "GRPCPROM_BASIC_AUTH_FILE", "/etc/grpcprom/users");
    CHECK_STR(o.basic_auth_file, "/etc/grpcprom/users");
    CHECK(!o.refuse_everyone);
    load_with(&o, "GRPCPROM_BEARER_TOKEN_FILE", "token.txt");
    CHECK_STR(o.bearer_token_file, "");
    CHECK(o.refuse_everyone);

    /* A region name: a file name of a safe set, or none (the process's own). */
    load_with(&o, NULL, NULL);
    CHECK_STR(o.shm, "");
    load_with(&o, "GRPCPROM_SHM", "orders-v2.prod_1");
    CHECK_STR(o.shm, "orders-v2.prod_1");
    const char *bad_names[] = {"../etc/passwd", ".hidden", "a b", "a/b", "\xc3\xa9t\xc3\xa9",
                               "0123456789012345678901234567890123456789012345678901234567890123x"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        load_with(&o, "GRPCPROM_SHM", bad_names[i]);
        CHECK_STR(o.shm, "");
    }
    /* Descriptor sets: absolute paths, ':'-separated. */
    load_with(&o, "GRPCPROM_PROTOSET", "/a/b.protoset:/c.pb");
    CHECK_STR(o.protoset, "/a/b.protoset:/c.pb");
    const char *bad_sets[] = {"b.protoset", "/a.pb:c.pb", "/a.pb::/b.pb", ":/a.pb"};
    for (size_t i = 0; i < sizeof(bad_sets) / sizeof(bad_sets[0]); i++) {
        load_with(&o, "GRPCPROM_PROTOSET", bad_sets[i]);
        CHECK_STR(o.protoset, "");
    }

    /* A command checks a value the same way, and says what is wrong. */
    CHECK(options_check("GRPCPROM_SHM", "orders") == NULL);
    CHECK_STR(options_check("GRPCPROM_LISTEN", "nowhere"),
              "GRPCPROM_LISTEN=\"nowhere\": the port must be a number from 1 to 65535");
    CHECK_DONE();
}
