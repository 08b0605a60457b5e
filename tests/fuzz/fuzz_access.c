/* fuzz_access.c: any address list and any Authorization header are parsed
 * without a crash; only the right credentials pass. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access.h"

/* bcrypt of "secret", cost 5 */
#define SECRET_HASH "$2b$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a"

static struct access_users *users;
static char *token;

static const char *temp_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/grpcprom-fuzz-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        abort();
    close(fd);
    return path;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *path = temp_file("alice:" SECRET_HASH "\n");
    if (access_load_users(path, &users) != NULL)
        abort();
    unlink(path);
    path = temp_file("t0ken\n");
    if (access_load_token(path, &token) != NULL)
        abort();
    unlink(path);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct access_list list;
    if (access_parse_list(text, &list) == NULL) {
        if (list.count > ACCESS_MAX_RULES)
            abort();
        access_list_allows(&list, size > 4 ? *(const uint32_t *)data : 0);
    }
    if (access_authorized(users, token, text) && strcasecmp(text, "Bearer t0ken") != 0 &&
        strcasecmp(text, "Basic YWxpY2U6c2VjcmV0") != 0) {
        /* the only other ways in: blanks after the scheme, base64 padding variants */
        const char *rest = text + strcspn(text, " ") + strspn(text + strcspn(text, " "), " ");
        if (strcmp(rest, "t0ken") != 0 && strncmp(rest, "YWxpY2U6c2VjcmV0", 16) != 0)
            abort();
    }
    free(text);
    return 0;
}
