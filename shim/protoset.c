/* protoset.c: reads the services of a descriptor set with libprotobuf-c
 * (into libgrpcprom-protoset.so; see protoset.h). */
#include "protoset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "descriptor.pb-c.h"

/* The whole file, or NULL with why. */
static uint8_t *read_file(const char *file, size_t *size, char *why, size_t why_size)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    uint8_t *data = NULL;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, why_size, "%s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(why, why_size, "not a regular file");
    } else if (st.st_size > PROTOSET_MAX_BYTES) {
        snprintf(why, why_size, "larger than %d MiB", PROTOSET_MAX_BYTES >> 20);
    } else if ((data = malloc((size_t)st.st_size + 1)) == NULL) {
        snprintf(why, why_size, "out of memory");
    } else {
        size_t got = 0;
        ssize_t n = 1;
        while (got < (size_t)st.st_size && (n = read(fd, data + got, (size_t)st.st_size - got)) > 0)
            got += (size_t)n;
        *size = got;
        if (n < 0) {
            snprintf(why, why_size, "%s", strerror(errno));
            free(data);
            data = NULL;
        }
    }
    if (fd >= 0)
        close(fd);
    return data;
}

int protoset_methods(const char *file, protoset_method_visitor visit, void *ctx, char *why,
                     size_t why_size)
{
    size_t size = 0;
    uint8_t *data = read_file(file, &size, why, why_size);
    if (data == NULL)
        return -1;
    Google__Protobuf__FileDescriptorSet *set =
        google__protobuf__file_descriptor_set__unpack(NULL, size, data);
    free(data);
    if (set == NULL) {
        snprintf(why, why_size, "not a descriptor set (protoc --include_imports "
                                "--descriptor_set_out makes one)");
        return -1;
    }
    for (size_t f = 0; f < set->n_file; f++) {
        const Google__Protobuf__FileDescriptorProto *proto = set->file[f];
        const char *package = proto->package ? proto->package : "";
        for (size_t s = 0; s < proto->n_service; s++) {
            const Google__Protobuf__ServiceDescriptorProto *service = proto->service[s];
            for (size_t m = 0; m < service->n_method; m++) {
                const Google__Protobuf__MethodDescriptorProto *method = service->method[m];
                char path[2048];
                int n = snprintf(path, sizeof(path), "/%s%s%s/%s", package, package[0] ? "." : "",
                                 service->name ? service->name : "",
                                 method->name ? method->name : "");
                if (n < 0 || (size_t)n >= sizeof(path))
                    continue; /* longer than any path that can have a series */
                visit(path, (method->client_streaming ? 1 : 0) | (method->server_streaming ? 2 : 0),
                      ctx);
            }
        }
    }
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    return 0;
}
