/* libsaga: everything. Include this one header.
 *
 * Thread safety: the protocol functions, saga_strerror and saga_error_set
 * are thread-safe. A saga_participant or saga_client is used by one thread
 * at a time (the one that polls); saga_participant_stop() may be called
 * from a signal handler or any thread, saga_participant_get_stats() from
 * any thread. Each function's comment says which thread may call it. No function prints,
 * logs or exits: errors are returned as saga_err codes, with a message in saga_error when
 * asked. The SAGA_VERSION_* macros come from saga/error.h (so every header has them). */
#ifndef SAGA_SAGA_H
#define SAGA_SAGA_H

#include "saga/error.h"
#include "saga/protocol.h"
#include "saga/participant.h"
#include "saga/client.h"
#include "saga/builder.h"
#include "saga/trace.h"
#include "saga/sign.h"

#endif
