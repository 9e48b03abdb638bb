/* saga_engine_ids.c - id bookkeeping for the engine: the set of outbox ids
 * handed to the producer and not yet confirmed (open addressing), and
 * sorted, de-duplicated arrays of saga ids for batch loads. */
#include "saga_engine_state.h"

static size_t id_hash(int64_t id, size_t cap)
{
    return (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull) & (cap - 1);
}

int saga__idset_has(const idset *s, int64_t id)
{
    if (s->cap == 0)
        return 0;
    for (size_t i = id_hash(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == id)
            return 1;
        if (s->slots[i] == 0)
            return 0;
    }
}

int saga__idset_add(idset *s, int64_t id);

static int idset_grow(idset *s)
{
    idset bigger = {calloc(s->cap ? s->cap * 2 : 1024, sizeof(int64_t)),
                    s->cap ? s->cap * 2 : 1024, 0};
    if (bigger.slots == NULL)
        return -1;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i] != 0)
            saga__idset_add(&bigger, s->slots[i]);
    free(s->slots);
    *s = bigger;
    return 0;
}

int saga__idset_add(idset *s, int64_t id)
{
    if ((s->n + 1) * 2 > s->cap && idset_grow(s) != 0)
        return -1;
    for (size_t i = id_hash(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == id)
            return 0;
        if (s->slots[i] == 0) {
            s->slots[i] = id;
            s->n++;
            return 0;
        }
    }
}

void saga__idset_del(idset *s, int64_t id)
{
    size_t i, j;
    if (s->cap == 0)
        return;
    for (i = id_hash(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == 0)
            return;
        if (s->slots[i] == id)
            break;
    }
    s->slots[i] = 0;
    s->n--;
    /* Re-insert the rest of the cluster (backward-shift deletion). */
    for (j = (i + 1) & (s->cap - 1); s->slots[j] != 0; j = (j + 1) & (s->cap - 1)) {
        int64_t v = s->slots[j];
        s->slots[j] = 0;
        s->n--;
        saga__idset_add(s, v);
    }
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Sort ids and drop repeats; returns the new count. */
int saga__engine_sort_unique(char (*ids)[SAGA_ID_LEN + 1], int n)
{
    int k = 0;
    qsort(ids, (size_t)n, sizeof *ids, cmp_id);
    for (int i = 0; i < n; i++)
        if (k == 0 || strcmp(ids[k - 1], ids[i]) != 0)
            memmove(ids[k++], ids[i], sizeof *ids);
    return k;
}

int saga__engine_find_id(char (*ids)[SAGA_ID_LEN + 1], int n, const char *id)
{
    char(*hit)[SAGA_ID_LEN + 1] = bsearch(id, ids, (size_t)n, sizeof *ids, cmp_id);
    return hit ? (int)(hit - ids) : -1;
}

const char *saga__engine_cmd_service(const saga_engine *e, const char *topic)
{
    size_t pl = strlen(e->prefix);
    if (strncmp(topic, e->prefix, pl) != 0 || strncmp(topic + pl, "cmd.", 4) != 0)
        return NULL;
    return topic + pl + 4;
}
