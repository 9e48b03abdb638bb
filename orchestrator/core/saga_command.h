/* saga_command.h - the command a SEND action of the machine stands for,
 * as the batch writer puts it in the outbox. Pure. */
#ifndef SAGA_COMMAND_H
#define SAGA_COMMAND_H

#include "saga/error.h"
#include "saga/trace.h"
#include "saga_machine.h"

/* Encode the command of action ac (a SAGA_ACT_SEND of s) into *text (the
 * caller's, free()), its topic (<prefix>cmd.<service>), and its
 * traceparent (the attempt's span in the saga's trace; "" when the saga
 * has no trace context). Errors: SAGA_EINVAL, SAGA_ENOMEM (err says). */
int saga_action_command(const saga_state *s, const saga_action *ac, const char *prefix,
                        char **text, char topic[256],
                        char traceparent[SAGA_TRACEPARENT_LEN + 1], saga_error *err);

#endif
