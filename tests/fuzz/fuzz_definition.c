/* libFuzzer target: the definition parser and validator, and the input
 * templates of whatever parses. Any input must give a definition or a list
 * of problems — never a crash, a leak or a hang — and what validates must
 * never be called malformed when its inputs are resolved (the validator
 * and the resolver share one reference parser). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "saga_definition.h"
#include "saga_template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    saga_definition *def = NULL;
    saga_def_problems problems = {0};

    if (saga_definition_parse((const char *)data, size, &def, &problems) != SAGA_OK)
        return 0;
    /* Resolve every step's input against a context that has some values. */
    {
        json_t *ctx =
            json_pack("{s:{s:i, s:s, s:[i,i]}, s:{}, s:{s:s}}", "input", "x", 1, "s", "v",
                      "a", 1, 2, "steps", "saga", "id", "00000000-0000-0000-0000");
        for (int i = 0; i < def->nsteps; i++) {
            saga_error err = {0};
            json_t *out = saga_template_resolve(def->steps[i].input, ctx, &err);
            if (out == NULL && err.code == SAGA_EDEF) {
                fprintf(stderr, "validated, then malformed at run time: %s\n",
                        err.message);
                abort();
            }
            json_decref(out);
            if (def->steps[i].name != NULL)
                json_object_set_new(json_object_get(ctx, "steps"), def->steps[i].name,
                                    json_pack("{s:{s:s}}", "output", "id", "1"));
        }
        json_decref(ctx);
    }
    saga_definition_free(def);
    return 0;
}
