/* The participant's inner step, for fuzz targets and tests that drive it
 * without a consumer (tests/fuzz/fuzz_apply.c). Not part of the API. */
#ifndef SAGA_PARTICIPANT_INTERNAL_H
#define SAGA_PARTICIPANT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "saga/participant.h"

/* Handle len bytes at buf (borrowed) exactly as a message consumed from
 * the command topic at partition 0, offset offset: decoded, run through
 * the barrier and the handler, answered (a malformed or undeliverable one
 * dead-lettered), and the replies flushed. No offset is stored. Returns
 * SAGA_OK, or what would have made poll() consume it again: SAGA_EDB (the
 * transaction failed or was left open), SAGA_EKAFKA (a reply or dead
 * letter not delivered), with err saying why. From the polling thread. */
int saga__participant_feed(saga_participant *p, const char *buf, size_t len,
                           int64_t offset, saga_error *err);

#endif
