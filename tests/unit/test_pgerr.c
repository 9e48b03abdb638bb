/* Whose fault a failed transaction is: only what the data causes may turn
 * a message into a dead letter; a lost connection, a deadlock, a full
 * disk or a shutdown never may. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "saga/error.h"
#include "saga_pgerr.h"

static void test_the_data_is_blamed_for_data_errors(void **state)
{
    static const char *const data[] = {
        "22008", /* datetime field overflow: retry_after 10^16 */
        "22P05", /* untranslatable character: \u0000 in jsonb */
        "23505", /* unique violation */
        "54000", /* program limit exceeded: a value too large */
        "P0001", /* a trigger's RAISE EXCEPTION */
        "XX000", /* internal error */
        "",      /* no SQLSTATE: a row sagad cannot read */
    };
    (void)state;
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++)
        assert_int_equal(saga_pgerr_state_blames_data(data[i]), 1);
    assert_int_equal(saga_pgerr_state_blames_data(NULL), 1);
}

static void test_the_server_is_blamed_for_its_own_troubles(void **state)
{
    static const char *const server[] = {
        "08006", /* connection failure */
        "40001", /* serialization failure */
        "40P01", /* deadlock */
        "53100", /* disk full */
        "53300", /* too many connections */
        "55P03", /* lock not available */
        "57014", /* statement timeout / cancel */
        "57P01", /* admin shutdown */
        "58030", /* I/O error */
    };
    (void)state;
    for (size_t i = 0; i < sizeof server / sizeof server[0]; i++)
        assert_int_equal(saga_pgerr_state_blames_data(server[i]), 0);
}

static void test_no_connection_and_no_memory_blame_nobody(void **state)
{
    (void)state;
    saga_pgerr_clear();
    assert_string_equal(saga_pgerr_sqlstate(), "");
    /* Without a connection nothing can be said about the data. */
    assert_int_equal(saga_pgerr_blames_data(NULL, SAGA_EDB), 0);
    assert_int_equal(saga_pgerr_blames_data(NULL, SAGA_ENOMEM), 0);
    /* A NULL result keeps what was noted. */
    saga_pgerr_note(NULL);
    assert_string_equal(saga_pgerr_sqlstate(), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_data_is_blamed_for_data_errors),
        cmocka_unit_test(test_the_server_is_blamed_for_its_own_troubles),
        cmocka_unit_test(test_no_connection_and_no_memory_blame_nobody),
    };
    return cmocka_run_group_tests_name("pgerr", tests, NULL, NULL);
}
