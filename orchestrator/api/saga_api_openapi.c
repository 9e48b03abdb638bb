/* saga_api_openapi.c - GET /v1/openapi.json: the API's OpenAPI document,
 * orchestrator/api/openapi.json as it was when sagad was built (the
 * Makefile embeds it with scripts/embed), so that nothing is read from
 * disk at run time and the document always matches the binary. */
#include <stdlib.h>
#include <string.h>

#include "saga_api_internal.h"
#include "saga_api_openapi.h"

/* Generated into $(BUILD)/gen, on the include path of this file only. */
#include <saga_openapi_json.h>

void saga__api_openapi(const saga_http_request *req, saga_http_response *res)
{
    char *body;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
        res->allow = "GET, HEAD";
        saga__api_problem(res, 405, "method_not_allowed", "Method Not Allowed", req->path,
                          NULL, NULL, "%s is not allowed on %s (GET, HEAD)", req->method,
                          req->path);
        return;
    }
    if ((body = malloc(sizeof saga_openapi_json)) == NULL) {
        saga__api_problem(res, 500, "internal", "Internal Server Error", req->path, NULL,
                          NULL, "out of memory");
        return;
    }
    memcpy(body, saga_openapi_json, sizeof saga_openapi_json);
    saga__api_answer(res, 200, JSON_TYPE, body);
}
