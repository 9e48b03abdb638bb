/* hello_participant.c: the smallest useful saga participant. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <saga/saga.h>

static saga_participant *participant;

static void on_signal(int sig)
{
    (void)sig;
    saga_participant_stop(participant); /* run() returns after this batch */
}

/* The action: cmd->payload is the step's input; reply ok, failed or retry. */
static void say_hello(const saga_command *cmd, struct pg_conn *db, saga_result *result,
                      void *arg)
{
    const char *name = json_string_value(json_object_get(cmd->payload, "name"));
    (void)db;
    (void)arg;
    if (name == NULL) {
        saga_result_fail(result, "bad_input", "\"name\" must be a string");
        return;
    }
    saga_result_ok(result, json_pack("{s:s+}", "greeting", "Hello, ", name));
}

/* libsaga never prints: its problems (a bad command set aside) come here. */
static void print_problem(saga_participant_log_level lv, const char *msg, void *out)
{
    fprintf(out, "hello: %s%s\n", lv == SAGA_PARTICIPANT_LOG_ERROR ? "error: " : "", msg);
}

int main(void)
{
    saga_participant_options opts = {0};
    saga_error err;
    int rc;

    opts.brokers = getenv("SAGA_KAFKA_BROKERS");
    opts.topic_prefix = getenv("SAGA_TOPIC_PREFIX");
    opts.service = "hello"; /* consumes <prefix>cmd.hello */
    if (saga_participant_new(&opts, &participant, &err) != SAGA_OK) {
        fprintf(stderr, "hello: %s\n", err.message);
        return 1;
    }
    saga_participant_set_logger(participant, print_problem, stderr);
    saga_participant_on(participant, SAGA_PHASE_INVOKE, "say_hello", say_hello, NULL);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "hello: ready\n");
    rc = saga_participant_run(participant, &err);
    if (rc != SAGA_OK)
        fprintf(stderr, "hello: %s\n", err.message);
    saga_participant_free(participant);
    return rc == SAGA_OK ? 0 : 1;
}
