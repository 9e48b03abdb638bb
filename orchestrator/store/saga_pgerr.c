/* Whose fault a failed transaction is (see saga_pgerr.h). */
#include <stdio.h>
#include <string.h>

#include "saga/error.h"
#include "saga_pgerr.h"

static _Thread_local char last_state[6];

void saga_pgerr_note(const PGresult *r)
{
    const char *s = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (s != NULL && strlen(s) == 5)
        memcpy(last_state, s, 6);
}

void saga_pgerr_clear(void)
{
    last_state[0] = '\0';
}

const char *saga_pgerr_sqlstate(void)
{
    return last_state;
}

int saga_pgerr_state_blames_data(const char *sqlstate)
{
    /* Classes that say nothing about the data: connection exception,
     * transaction rollback (serialization, deadlock), insufficient
     * resources (disk full, too many connections), object not in
     * prerequisite state (lock not available), operator intervention
     * (shutdown, statement timeout), system error. */
    static const char *const not_the_data[] = {"08", "40", "53", "55", "57", "58"};
    if (sqlstate == NULL)
        sqlstate = "";
    for (size_t i = 0; i < sizeof not_the_data / sizeof not_the_data[0]; i++)
        if (strncmp(sqlstate, not_the_data[i], 2) == 0)
            return 0;
    /* A SQLSTATE of another class (22 data exception, 23 integrity, 54
     * program limit, P0 a trigger's RAISE, XX internal) or none at all
     * (a row sagad cannot read, a command it cannot encode): the data. */
    return 1;
}

int saga_pgerr_blames_data(PGconn *db, int rc)
{
    if (rc == SAGA_ENOMEM || db == NULL || PQstatus(db) != CONNECTION_OK)
        return 0;
    return saga_pgerr_state_blames_data(last_state);
}
