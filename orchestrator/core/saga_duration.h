/* Durations in definitions: "250ms", "10s", "5m", "1h", and sums like "1m30s". */
#ifndef SAGA_DURATION_H
#define SAGA_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Parse text into milliseconds. Returns 0 on success, -1 when text is not a
 * duration (empty, no unit, unknown unit, negative, overflow). */
int saga_duration_parse(const char *text, int64_t *out_ms);

/* Format ms compactly ("1m30s", "250ms", "0ms") into buf. */
void saga_duration_format(int64_t ms, char *buf, size_t size);

#endif
