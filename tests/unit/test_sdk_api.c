/* libsaga's API contracts that need no server: misuse is refused with an
 * error code, never a crash; NULL is safe where the header says so. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga/saga.h"

static void test_version(void **state)
{
    (void)state;
    assert_int_equal(SAGA_VERSION_NUM, (SAGA_VERSION_MAJOR << 16) |
                                           (SAGA_VERSION_MINOR << 8) |
                                           SAGA_VERSION_PATCH);
    assert_non_null(strstr(SAGA_VERSION_STRING, "."));
}

static void test_participant_misuse(void **state)
{
    saga_participant *p = (saga_participant *)0x1;
    saga_participant_options o = {0};
    saga_participant_stats st = {0};
    saga_error err = {0};
    (void)state;
    assert_int_equal(saga_participant_new(NULL, &p, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, "brokers and service"));
    o.brokers = "127.0.0.1:1";
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EINVAL); /* no service */
    o.service = "";
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EINVAL);
    o.service = "x";
    o.db_url = "postgresql://nobody@127.0.0.1:1/none";
    o.db_schema = "bad schema";
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, "db_schema"));
    assert_int_equal(saga_participant_new(&o, NULL, &err), SAGA_EINVAL);
    assert_int_equal(saga_participant_on(NULL, SAGA_PHASE_INVOKE, "a", NULL, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_participant_poll(NULL, 0, &err), SAGA_EINVAL);
    assert_int_equal(saga_participant_run(NULL, &err), SAGA_EINVAL);
    assert_int_equal(saga_participant_fd(NULL), -1);
    saga_participant_stop(NULL);
    assert_int_equal(saga_participant_get_stats(NULL, &st), SAGA_EINVAL);
    assert_string_equal(saga_participant_last_warning(NULL), "");
    saga_participant_free(NULL);
}

static void test_results_and_deferral_misuse(void **state)
{
    (void)state;
    /* Outcomes on no result are ignored (the output is freed, not leaked). */
    saga_result_ok(NULL, json_object());
    saga_result_fail(NULL, "c", "m");
    saga_result_retry(NULL, 5, "m");
    assert_null(saga_result_defer(NULL));
    assert_int_equal(saga_deferred_ok(NULL, NULL, json_object()), SAGA_EINVAL);
    assert_int_equal(saga_deferred_fail(NULL, NULL, "c", "m"), SAGA_EINVAL);
    assert_int_equal(saga_deferred_retry(NULL, NULL, 1, "m"), SAGA_EINVAL);
}

static void test_client_misuse(void **state)
{
    saga_client *c = NULL;
    saga_error err = {0};
    char id[SAGA_ID_LEN + 1], status[32];
    (void)state;
    assert_int_equal(saga_client_new(NULL, &c, &err), SAGA_EINVAL);
    assert_int_equal(saga_client_new("postgresql://nobody@127.0.0.1:1/none", &c, &err),
                     SAGA_EDB);
    assert_null(c);
    assert_non_null(strstr(err.message, "cannot connect"));
    assert_int_equal(saga_client_start(NULL, "x", NULL, NULL, id, NULL, &err),
                     SAGA_EINVAL);
    assert_int_equal(saga_client_status(NULL, "x", status, &err), SAGA_EINVAL);
    saga_client_free(NULL);
}

static void test_errors(void **state)
{
    saga_error err = {0};
    (void)state;
    for (int code = SAGA_EIO; code <= SAGA_OK; code++)
        assert_string_not_equal(saga_strerror(code), "unknown error");
    assert_int_equal(saga_error_set(&err, SAGA_EDB, "table %s", "t"), SAGA_EDB);
    assert_int_equal(err.code, SAGA_EDB);
    assert_string_equal(err.message, "table t");
    assert_int_equal(saga_error_set(NULL, SAGA_EIO, "ignored"), SAGA_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_participant_misuse),
        cmocka_unit_test(test_results_and_deferral_misuse),
        cmocka_unit_test(test_client_misuse),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("libsaga API contracts", tests, NULL, NULL);
}
