/* libsaga: everything. Include this one header.
 *
 * Thread safety: the protocol functions, saga_strerror and saga_error_set
 * are thread-safe. A saga_participant or saga_client is used by one thread
 * at a time (the one that polls); saga_participant_stop() may be called
 * from a signal handler. No function prints, logs or exits: errors are
 * returned as saga_err codes, with a message in saga_error when asked. */
#ifndef SAGA_SAGA_H
#define SAGA_SAGA_H

#define SAGA_VERSION_MAJOR  0
#define SAGA_VERSION_MINOR  1
#define SAGA_VERSION_PATCH  0
#define SAGA_VERSION_STRING "0.1.0"
/* For #if comparisons: 0xMMmmpp. */
#define SAGA_VERSION_NUM                                                                 \
    ((SAGA_VERSION_MAJOR << 16) | (SAGA_VERSION_MINOR << 8) | SAGA_VERSION_PATCH)

#include "saga/error.h"
#include "saga/protocol.h"
#include "saga/participant.h"
#include "saga/client.h"
#include "saga/builder.h"
#include "saga/trace.h"

#endif
