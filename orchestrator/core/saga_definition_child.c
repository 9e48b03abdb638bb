/* saga_definition_child.c - child steps ("child": a definition started as
 * a saga of its own): the keys a child step refuses, each saying why, and
 * the rules that need the other definitions — the child exists, it never
 * leads back to the saga that starts it, and a child that cannot be
 * undone once it completed (it has a pivot) is started only where this
 * saga cannot be undone either (docs/DEFINITIONS.md, "Child sagas"). */
#include "saga_definition_internal.h"

void saga__def_parse_child(json_t *s, const char *where, saga_step_def *st,
                           saga_def_problems *p)
{
    static const struct {
        const char *key, *why;
    } not_here[] = {
        {"service", "remove it"},
        {"action", "remove it"},
        {"compensation", "it is undone by compensating the child saga"},
        {"timeout", "give the child's definition a deadline"},
        {"retry", "the child's steps have their own"},
        {"compensation_retry", "the child's steps have their own"},
        {"wait", "a step either waits for a signal or starts a child"},
        {"for_each", "a child step starts one saga; it cannot fan out"},
        {"concurrency", "a child step starts one saga; it cannot fan out"},
        {"max_elements", "a child step starts one saga; it cannot fan out"},
    };
    for (size_t k = 0; k < sizeof not_here / sizeof not_here[0]; k++)
        if (json_object_get(s, not_here[k].key) != NULL) {
            char kp[128];
            snprintf(kp, sizeof kp, "%s.%s", where, not_here[k].key);
            saga__def_problem(p, kp,
                              "a child step runs a saga, not a service: \"%s\" has no "
                              "place here (%s)",
                              not_here[k].key, not_here[k].why);
        }
    st->child = saga__def_get_string(s, "child", where, 1, 1, p);
}

/* Does the definition named name lead (through its child steps) to
 * target? path collects the way, for the message. Depth-bounded: the
 * definitions a deployment has are few, and a cycle not through target is
 * reported for its own definition. */
static int leads_to(const char *name, const char *target, saga_def_lookup_fn lookup,
                    void *arg, int depth, char *path, size_t size)
{
    const saga_definition *d;
    size_t len = strlen(path);
    if (depth > 32)
        return 0;
    snprintf(path + len, size - len, " -> %s", name);
    if (strcmp(name, target) == 0)
        return 1;
    if ((d = lookup(name, arg)) != NULL)
        for (int i = 0; i < d->nsteps; i++)
            if (d->steps[i].child != NULL &&
                leads_to(d->steps[i].child, target, lookup, arg, depth + 1, path, size))
                return 1;
    path[len] = '\0';
    return 0;
}

int saga_definition_check_children(const saga_definition *def, saga_def_lookup_fn lookup,
                                   void *arg, saga_def_problems *problems)
{
    int before = problems->count;
    for (int i = 0; i < def->nsteps; i++) {
        const saga_step_def *st = &def->steps[i];
        const saga_definition *child;
        char where[64], path[512];
        if (st->child == NULL)
            continue;
        snprintf(where, sizeof where, "steps[%d].child", i);
        snprintf(path, sizeof path, "%s", def->name);
        child = strcmp(st->child, def->name) == 0 ? def : lookup(st->child, arg);
        if (child == NULL) {
            saga__def_problem(problems, where,
                              "no definition \"%s\" (deploy it first, or with this one)",
                              st->child);
            continue;
        }
        if (leads_to(st->child, def->name, lookup, arg, 0, path, sizeof path)) {
            saga__def_problem(problems, where,
                              "\"%s\" leads back to \"%s\" (%s): each saga would start "
                              "another without end",
                              st->child, def->name, path);
            continue;
        }
        for (int k = 0; k < child->nsteps; k++)
            if (child->steps[k].pivot && !st->forward_only) {
                saga__def_problem(problems, where,
                                  "\"%s\" has a pivot (its step \"%s\"): once it "
                                  "completed it cannot be undone, so a step before this "
                                  "saga's pivot, which may have to be undone, cannot "
                                  "start it",
                                  st->child, child->steps[k].name);
                break;
            }
    }
    return problems->count > before ? SAGA_EDEF : SAGA_OK;
}
