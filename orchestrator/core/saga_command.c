/* saga_command.c - the command a SEND action stands for: the protocol
 * message (saga_command_encode of the SDK), the command topic of the step's
 * service and the attempt's traceparent. Pure. */
#include <string.h>

#include "saga/protocol.h"
#include "saga_command.h"
#include "saga_shared.h"
#include "saga_tracing.h"

/* ---- sagas ---- */

int saga_action_command(const saga_state *s, const saga_action *ac, const char *prefix,
                        char **text, char topic[256],
                        char traceparent[SAGA_TRACEPARENT_LEN + 1], saga_error *err)
{
    const saga_step_def *sd = &s->def->steps[ac->step];
    saga_command cmd = {0};
    char cmd_id[128], reply_to[256];

    /* Each service answers on a topic of its own, so that the broker can
     * let it write there and nowhere else (docs/SECURITY.md). */
    saga__topic_reply_service(reply_to, sizeof reply_to, prefix, sd->service);
    /* An element's command is version 2: one an older participant refuses
     * rather than mistaking for a duplicate of another element. */
    cmd.v = ac->element >= 0 ? SAGA_PROTOCOL_VERSION_ELEMENTS : SAGA_PROTOCOL_VERSION;
    cmd.element = ac->element >= 0 ? ac->element : 0;
    memcpy(cmd.saga_id, s->id, sizeof cmd.saga_id);
    cmd.saga = s->def->name;
    cmd.saga_version = s->def->version;
    cmd.step = ac->step;
    cmd.step_name = sd->name;
    cmd.phase = ac->phase;
    cmd.action = ac->phase == SAGA_PHASE_COMPENSATE ? sd->compensation : sd->action;
    saga_command_id_format_element(cmd_id, sizeof cmd_id, s->id, ac->step, ac->phase,
                                   ac->element);
    cmd.command_id = cmd_id;
    cmd.attempt = ac->attempt;
    cmd.deadline = ac->deadline;
    cmd.reply_to = reply_to;
    cmd.payload = ac->payload;
    saga__topic_cmd(topic, 256, prefix, sd->service);
    saga_tracing_element(s->traceparent, ac->step, ac->phase, ac->attempt, ac->element,
                         traceparent, SAGA_TRACEPARENT_LEN + 1);
    return saga_command_encode(&cmd, text, NULL, err);
}
