/* The engine's inner steps, for tests and fuzz targets that drive it
 * without its loop (tests/fuzz/fuzz_apply.c). Not for sagad: the loop
 * (saga_engine_run) owns the engine while it runs, and these must never be
 * called from another thread while it does. */
#ifndef SAGA_ENGINE_INTERNAL_H
#define SAGA_ENGINE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "saga_engine.h"

/* One pass of the loop's work besides replies: due timers, start
 * requests, the outbox scan, delivery reports and refused commands.
 * Returns SAGA_OK, or SAGA_EDB when the database cannot be reached. */
int saga__engine_turn(saga_engine *e);

/* Apply n messages (bufs[i], lens[i] bytes; borrowed for the call) as one
 * batch from the reply topic, exactly as the loop applies what it
 * consumes, at offsets first_offset.. of partition 0 (a dead letter's
 * address; keep them unique). No offsets are stored and nothing is
 * rewound. Returns SAGA_OK when every message was applied, ignored or set
 * aside; anything else means the batch would have been consumed again:
 * SAGA_EDB (the database's fault, or a failure the engine could not
 * isolate), SAGA_EKAFKA, SAGA_ENOMEM. */
int saga__engine_feed_replies(saga_engine *e, const char *const *bufs, const size_t *lens,
                              int n, int64_t first_offset);

#endif
