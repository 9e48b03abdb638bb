/* The benchmark's participant: action "work" (fails definitively at the
 * step the saga's input names in fail_at) and compensation "undo", both
 * through libsaga's barrier in schema "bench". */
#include <stdio.h>
#include <stdlib.h>

#include "example_common.h"

static const char schema_sql[] = "SELECT 1";

static void work(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    json_t *fail_at = json_object_get(cmd->payload, "fail_at");
    (void)db;
    (void)arg;
    if (json_is_integer(fail_at) && json_integer_value(fail_at) == cmd->step) {
        saga_result_fail(res, "bench_failure", "step %d fails on purpose", cmd->step);
        return;
    }
    saga_result_ok(res, json_pack("{s:i}", "step", cmd->step));
}

static void undo(const saga_command *cmd, PGconn *db, saga_result *res, void *arg)
{
    (void)cmd;
    (void)db;
    (void)arg;
    saga_result_ok(res, NULL);
}

int main(int argc, char **argv)
{
    static const example_handler handlers[] = {
        {SAGA_PHASE_INVOKE, "work", work, NULL},
        {SAGA_PHASE_COMPENSATE, "undo", undo, NULL},
    };
    static const example_service svc = {"bench", "bench", schema_sql, handlers, 2, NULL};
    return example_main(&svc, argc, argv);
}
