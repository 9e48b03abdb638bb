/* saga_secret.c - a secret (a database URL with its password) read from a
 * file instead of argv or the environment, where any local user can see
 * it (/proc/PID/cmdline, ps; /proc/PID/environ for the same user). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "saga_shared.h"

FILE *saga__open_secret(const char *path, const char *what, saga_error *err)
{
    FILE *f = fopen(path, "r");
    struct stat st;
    if (f == NULL) {
        saga__error_set(err, SAGA_EIO, "%s%s: %s", what, path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &st) != 0 || (st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
        fclose(f);
        saga__error_set(
            err, SAGA_EIO,
            "%s%s: readable or writable by others (mode %04o): run chmod o-rwx "
            "%s",
            what, path, (unsigned)(st.st_mode & 07777), path);
        return NULL;
    }
    return f;
}

int saga__read_secret(const char *path, char **out, saga_error *err)
{
    FILE *f;
    char line[4096];
    int rc = SAGA_OK;
    *out = NULL;
    if ((f = saga__open_secret(path, "", err)) == NULL)
        return SAGA_EIO;
    for (;;) {
        size_t len;
        char *s = line;
        if (fgets(line, sizeof line, f) == NULL) {
            rc = saga__error_set(err, SAGA_EINVAL, "%s: empty (one line expected)", path);
            break;
        }
        len = strlen(line);
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' ||
                           line[len - 1] == ' ' || line[len - 1] == '\t'))
            line[--len] = '\0';
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0' || *s == '#')
            continue;
        if ((*out = strdup(s)) == NULL)
            rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
        break;
    }
    memset(line, 0, sizeof line);
    fclose(f);
    return rc;
}
