/* libsaga: everything. Include this one header. */
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

#endif
