/* saga_api_console.c - the operator console's files (docs/CONSOLE.md):
 * orchestrator/console/ as it was when sagad was built (the Makefile
 * embeds it with scripts/embed-files), served at / and /console/NAME
 * with a Content-Security-Policy that allows this origin's scripts and
 * styles only: no inline script, no outside fetch. */
#include <stdlib.h>
#include <string.h>

#include "saga_api_internal.h"

/* Generated into $(BUILD)/gen, on the include path of this file only. */
#include <saga_console_files.h>

/* Scripts and styles from this origin only (none inline), data from this
 * origin's API only, no frames, no plugins, forms only to itself. */
#define CONSOLE_CSP                                                                      \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "    \
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL)
        return "application/octet-stream";
    if (strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (strcmp(dot, ".svg") == 0)
        return "image/svg+xml";
    return "application/octet-stream";
}

void saga__api_console(const saga_http_request *req, saga_http_response *res)
{
    const char *name = strcmp(req->path, "/") == 0 ? "index.html" : req->path + 9;
    char *body;
    res->csp = CONSOLE_CSP;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        res->allow = "GET, HEAD";
        saga__api_problem(res, 405, "method_not_allowed", "Method Not Allowed", req->path,
                          NULL, NULL, "%s is not allowed on the console's files",
                          req->method);
        return;
    }
    for (int i = 0; embedded_files[i].name != NULL; i++) {
        if (strcmp(embedded_files[i].name, name) != 0)
            continue;
        if ((body = malloc(embedded_files[i].len + 1)) == NULL) {
            saga__api_problem(res, 500, "internal", "Internal Server Error", req->path,
                              NULL, NULL, "out of memory");
            return;
        }
        memcpy(body, embedded_files[i].data, embedded_files[i].len + 1);
        saga__api_answer(res, 200, type_of(name), body);
        res->len = embedded_files[i].len;
        /* Revalidated on every load: a new sagad may serve new files. */
        res->cache_control = "no-cache";
        return;
    }
    saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                      "the console has no file %.100s", name);
}
