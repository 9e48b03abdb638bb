/* libFuzzer target: decoding commands and replies from the wire. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "saga/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    saga_command c;
    saga_reply r;
    char *text = NULL;

    if (saga_command_decode((const char *)data, size, &c, NULL) == SAGA_OK) {
        /* What decodes must encode and decode again. */
        if (saga_command_encode(&c, &text, NULL, NULL) == SAGA_OK) {
            saga_command again;
            if (saga_command_decode(text, strlen(text), &again, NULL) != SAGA_OK)
                abort();
            saga_command_clear(&again);
            free(text);
        }
        saga_command_clear(&c);
    }
    if (saga_reply_decode((const char *)data, size, &r, NULL) == SAGA_OK) {
        if (saga_reply_encode(&r, &text, NULL, NULL) == SAGA_OK) {
            saga_reply again;
            if (saga_reply_decode(text, strlen(text), &again, NULL) != SAGA_OK)
                abort();
            saga_reply_clear(&again);
            free(text);
        }
        saga_reply_clear(&r);
    }
    return 0;
}
