/* saga_api_openapi.h - GET /v1/openapi.json: the OpenAPI 3.1 document of
 * the API (orchestrator/api/openapi.json), built into sagad. */
#ifndef SAGA_API_OPENAPI_H
#define SAGA_API_OPENAPI_H

#include "saga_http.h"

/* Answer req with the document: 200 application/json for GET and HEAD,
 * 405 (a problem document, with Allow) for any other method. It needs no
 * caller: route to it before authenticating (the document is public). */
void saga__api_openapi(const saga_http_request *req, saga_http_response *res);

#endif
