/* Trace contexts of sagas and step attempts (see saga_tracing.h). */
#include <string.h>

#include "saga_tracing.h"

int saga_tracing_start(const char *parent, char *out, size_t size)
{
    saga_trace_context ctx;
    int rc;
    if (out == NULL || size < SAGA_TRACEPARENT_LEN + 1)
        return SAGA_EINVAL;
    out[0] = '\0';
    if (parent != NULL && saga_traceparent_parse(parent, strlen(parent), &ctx) == SAGA_OK)
        rc = saga_trace_child(&ctx, &ctx);
    else
        rc = saga_trace_new(&ctx, SAGA_TRACE_FLAG_SAMPLED);
    if (rc != SAGA_OK)
        return rc;
    return saga_traceparent_format(&ctx, out, size);
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int saga_tracing_step(const char *saga_tp, int step, saga_phase phase, int attempt,
                      char *out, size_t size)
{
    return saga_tracing_element(saga_tp, step, phase, attempt, -1, out, size);
}

int saga_tracing_element(const char *saga_tp, int step, saga_phase phase, int attempt,
                         int element, char *out, size_t size)
{
    saga_trace_context ctx;
    uint64_t h = 1469598103934665603ull;
    uint32_t v[4] = {(uint32_t)step, (uint32_t)phase, (uint32_t)attempt,
                     (uint32_t)element};
    unsigned char bytes[16];
    if (out == NULL || size < SAGA_TRACEPARENT_LEN + 1)
        return SAGA_EINVAL;
    out[0] = '\0';
    if (saga_tp == NULL ||
        saga_traceparent_parse(saga_tp, strlen(saga_tp), &ctx) != SAGA_OK)
        return SAGA_EINVAL;
    /* Distinct per (saga span, step, phase, attempt); a span id may not be
     * all zero. */
    h = fnv1a(h, ctx.span_id, sizeof ctx.span_id);
    for (int i = 0; i < 16; i++) /* big-endian: the same ids on every machine */
        bytes[i] = (unsigned char)(v[i / 4] >> (24 - 8 * (i % 4)));
    /* A step's spans stay what they were before fan-out existed. */
    h = fnv1a(h, bytes, element < 0 ? 12 : sizeof bytes);
    if (h == 0)
        h = 1;
    for (int i = 0; i < 8; i++)
        ctx.span_id[i] = (uint8_t)(h >> (56 - 8 * i));
    return saga_traceparent_format(&ctx, out, size);
}

void saga_tracing_ids(const char *tp, char trace_id[SAGA_TRACE_ID_HEX_SIZE],
                      char span_id[SAGA_SPAN_ID_HEX_SIZE])
{
    saga_trace_context ctx;
    trace_id[0] = span_id[0] = '\0';
    if (tp == NULL || saga_traceparent_parse(tp, strlen(tp), &ctx) != SAGA_OK)
        return;
    saga_trace_id_hex(&ctx, trace_id);
    saga_span_id_hex(&ctx, span_id);
}
