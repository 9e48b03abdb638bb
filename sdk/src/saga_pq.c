/* libpq helpers shared by the SDK and sagad (see saga_pq.h). */
#include <libpq-fe.h>

#include "saga_shared.h"

static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

void saga__pq_quiet(PGconn *db)
{
    PQsetNoticeProcessor(db, ignore_notice, NULL);
}
