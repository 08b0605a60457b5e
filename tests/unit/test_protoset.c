/* test_protoset.c: the methods read from descriptor sets, and the one line
 * said of a file that is not one. Argument: the test proto's descriptor
 * set, as the build makes it. */
#include <fcntl.h>
#include <unistd.h>

#include "check.h"
#include "descriptor.pb-c.h"
#include "protoset.h"

struct seen {
    char paths[8][64];
    int streams[8];
    int count;
};

static void note(const char *path, int streams, void *ctx)
{
    struct seen *s = ctx;
    if (s->count < 8) {
        snprintf(s->paths[s->count], sizeof(s->paths[0]), "%s", path);
        s->streams[s->count] = streams;
    }
    s->count++;
}

static void write_file(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK_INT(write(fd, data, size), (long long)size);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ECHO_PROTOSET\n", argv[0]);
        return 2;
    }
    struct seen s = {.count = 0};
    char why[200] = "";
    CHECK_INT(protoset_methods(argv[1], note, &s, why, sizeof(why)), 0);
    CHECK_INT(s.count, 4);
    CHECK_STR(s.paths[0], "/grpcprom.test.Echo/Unary");
    CHECK_INT(s.streams[0], 0);
    CHECK_STR(s.paths[1], "/grpcprom.test.Echo/ServerStream");
    CHECK_INT(s.streams[1], 2);
    CHECK_STR(s.paths[2], "/grpcprom.test.Echo/ClientStream");
    CHECK_INT(s.streams[2], 1);
    CHECK_STR(s.paths[3], "/grpcprom.test.Echo/Bidi");
    CHECK_INT(s.streams[3], 3);

    /* Two files, one without a package: the path has no package part. */
    Google__Protobuf__MethodDescriptorProto m = GOOGLE__PROTOBUF__METHOD_DESCRIPTOR_PROTO__INIT;
    m.name = "Get";
    m.has_server_streaming = 1;
    m.server_streaming = 1;
    Google__Protobuf__MethodDescriptorProto *methods[] = {&m};
    Google__Protobuf__ServiceDescriptorProto svc = GOOGLE__PROTOBUF__SERVICE_DESCRIPTOR_PROTO__INIT;
    svc.name = "Plain";
    svc.n_method = 1;
    svc.method = methods;
    Google__Protobuf__ServiceDescriptorProto *services[] = {&svc};
    Google__Protobuf__FileDescriptorProto bare = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
    bare.name = "bare.proto";
    bare.n_service = 1;
    bare.service = services;
    Google__Protobuf__FileDescriptorProto messages_only = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
    messages_only.name = "types.proto";
    messages_only.package = "a.b";
    Google__Protobuf__FileDescriptorProto *files[] = {&messages_only, &bare};
    Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
    set.n_file = 2;
    set.file = files;
    uint8_t packed[256];
    size_t size = google__protobuf__file_descriptor_set__pack(&set, packed);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/test_protoset.%d", (int)getpid());
    write_file(path, packed, size);
    s.count = 0;
    CHECK_INT(protoset_methods(path, note, &s, why, sizeof(why)), 0);
    CHECK_INT(s.count, 1);
    CHECK_STR(s.paths[0], "/Plain/Get");
    CHECK_INT(s.streams[0], 2);

    /* Not descriptor sets: said, nothing visited. */
    s.count = 0;
    write_file(path, "\xff\xff\xff\xff this is text", 18);
    CHECK_INT(protoset_methods(path, note, &s, why, sizeof(why)), -1);
    CHECK_STR(why, "not a descriptor set (protoc --include_imports --descriptor_set_out makes one)");
    CHECK_INT(protoset_methods("/nonexistent/x.protoset", note, &s, why, sizeof(why)), -1);
    CHECK_STR(why, "No such file or directory");
    CHECK_INT(protoset_methods("/tmp", note, &s, why, sizeof(why)), -1);
    CHECK_STR(why, "not a regular file");
    CHECK_INT(s.count, 0);
    /* An empty file is an empty set. */
    write_file(path, "", 0);
    CHECK_INT(protoset_methods(path, note, &s, why, sizeof(why)), 0);
    CHECK_INT(s.count, 0);
    unlink(path);
    CHECK_DONE();
}
