/* sdk/internal/saga_shared.h: the growth helper (doubling from a first
 * size, exact capacities, refusal of sizes that would overflow with the old
 * array kept) and the topic names both libsaga and sagad build (and how a
 * name too long for its buffer shows). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga/error.h"
#include "saga_shared.h"

typedef struct pair {
    int64_t a, b;
} pair;

static void test_grow_doubles_from_first(void **state)
{
    (void)state;
    pair *items = NULL;
    int cap = 0;
    assert_int_equal(saga__grow(&items, &cap, 1, sizeof *items, 4), SAGA_OK);
    assert_non_null(items);
    assert_int_equal(cap, 4);
    for (int i = 0; i < 4; i++)
        items[i] = (pair){i, -i};
    /* Enough room already: nothing moves. */
    pair *before = items;
    assert_int_equal(saga__grow(&items, &cap, 4, sizeof *items, 4), SAGA_OK);
    assert_ptr_equal(items, before);
    assert_int_equal(cap, 4);
    /* One more doubles; a big jump doubles until it fits. */
    assert_int_equal(saga__grow(&items, &cap, 5, sizeof *items, 4), SAGA_OK);
    assert_int_equal(cap, 8);
    assert_int_equal(saga__grow(&items, &cap, 100, sizeof *items, 4), SAGA_OK);
    assert_int_equal(cap, 128);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(items[i].a, i);
        assert_int_equal(items[i].b, -i);
    }
    free(items);
}

static void test_grow_default_first(void **state)
{
    (void)state;
    char *bytes = NULL;
    int cap = 0;
    assert_int_equal(saga__grow(&bytes, &cap, 3, 1, 0), SAGA_OK);
    assert_int_equal(cap, 8);
    free(bytes);
}

static void test_grow_refuses_overflow(void **state)
{
    (void)state;
    int *items = NULL;
    int cap = 0;
    assert_int_equal(saga__grow(&items, &cap, 2, sizeof *items, 2), SAGA_OK);
    items[0] = 42;
    int *before = items;
    /* More than 2^30 elements, or more bytes than size_t holds: refused,
     * the array and its capacity unchanged. */
    assert_int_equal(saga__grow(&items, &cap, 0x40000000, sizeof *items, 2), SAGA_ENOMEM);
    assert_ptr_equal(items, before);
    assert_int_equal(cap, 2);
    assert_int_equal(saga__grow(&items, &cap, 3, SIZE_MAX / 2, 2), SAGA_ENOMEM);
    assert_ptr_equal(items, before);
    assert_int_equal(cap, 2);
    assert_int_equal(items[0], 42);
    free(items);
}

static void test_error_set(void **state)
{
    saga_error err = {0};
    char big[2000];
    (void)state;
    assert_int_equal(saga__error_set(&err, SAGA_EDB, "table %s", "t"), SAGA_EDB);
    assert_int_equal(err.code, SAGA_EDB);
    assert_string_equal(err.message, "table t");
    assert_int_equal(saga__error_set(NULL, SAGA_EIO, "ignored"), SAGA_EIO);
    /* A long message is cut to fit, still terminated. */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(saga__error_set(&err, SAGA_EINVAL, "%s", big), SAGA_EINVAL);
    assert_int_equal(strlen(err.message), sizeof err.message - 1);
}

static void test_topic_names(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(saga__topic_cmd(buf, sizeof buf, "saga.", "payment"), 16);
    assert_string_equal(buf, "saga.cmd.payment");
    assert_int_equal(saga__topic_reply(buf, sizeof buf, "acme."), 10);
    assert_string_equal(buf, "acme.reply");
    assert_int_equal(saga__topic_reply(buf, sizeof buf, NULL), 10);
    assert_string_equal(buf, "saga.reply");
    /* Cut: the full length comes back, so callers can tell. */
    assert_int_equal(saga__topic_cmd(buf, 10, "saga.", "payment"), 16);
    assert_string_equal(buf, "saga.cmd.");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow_doubles_from_first),
        cmocka_unit_test(test_grow_default_first),
        cmocka_unit_test(test_grow_refuses_overflow),
        cmocka_unit_test(test_error_set),
        cmocka_unit_test(test_topic_names),
    };
    return cmocka_run_group_tests_name("saga_shared.h", tests, NULL, NULL);
}
