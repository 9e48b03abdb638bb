/* Internal (not installed): libpq helpers shared by the SDK and sagad. */
#ifndef SAGA_PQ_H
#define SAGA_PQ_H

#include <libpq-fe.h>

/* Keep the server's NOTICEs ("already exists, skipping", "no transaction in
 * progress") off stderr: libpq prints them by default, and neither library
 * code nor a tool's output should carry them. Errors still come back
 * through results. */
void saga__pq_quiet(PGconn *db);

#endif
