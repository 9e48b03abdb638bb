/* sagactl's shared helpers (the program's own, not part of any library). */
#ifndef SAGACTL_H
#define SAGACTL_H

#include <jansson.h>
#include <libpq-fe.h>

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_DB = 3 };

extern const char *db_url; /* --db or SAGA_PG_URL */
extern int want_json;      /* --json */

/* Print "sagactl: <fmt with arg>" and a hint, exit 2. */
void die_usage(const char *fmt, const char *arg);

/* Connect (exit 3 when unreachable; with need_schema, also when the
 * schema is not migrated). The caller PQfinish()es. */
PGconn *connect_db(int need_schema);

/* A query returning one JSON text; NULL when no row. Exits 3 on error. */
json_t *query_json(PGconn *db, const char *sql, int n, const char *const *params);

void print_json(json_t *j);

/* o[k] as a string, "-" when absent. Borrowed. */
const char *str(json_t *o, const char *k);

/* Exit 2 unless id is a UUID. */
int check_uuid(const char *id);

/* Colour codes when stdout is a terminal and NO_COLOR is unset, else "". */
const char *color_for_status(const char *status);
const char *color_reset(void);

/* "12s ago", "5m ago", "3h ago", "2d ago" for an age in seconds. */
void format_age(double seconds, char *buf, size_t size);

/* Commands in other files. */
int cmd_retry(int argc, char **argv);
int cmd_compensate(int argc, char **argv);
int cmd_skip(int argc, char **argv);
int cmd_resolve(int argc, char **argv);
int cmd_stuck(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_defs(int argc, char **argv);
int cmd_purge(int argc, char **argv);

#endif
