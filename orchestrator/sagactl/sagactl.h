/* sagactl's shared helpers (the program's own, not part of any library). */
#ifndef SAGACTL_H
#define SAGACTL_H

#include <getopt.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "saga_definition.h"
#include "saga_shared.h"

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_DB = 3 };

extern const char *db_url; /* --db or SAGA_PG_URL */
extern int want_json;      /* --json */

/* Print "sagactl: <fmt, args>" and a hint, exit 2. */
__attribute__((format(printf, 1, 2), noreturn)) void die_usage(const char *fmt, ...);

/* getopt_long over a command's arguments (argv[0] is the command's name):
 * the next option's val, or -1 when none is left, the operands then being
 * argv[optind..argc) (options and operands may be mixed). Both
 * "--opt VALUE" and "--opt=VALUE" work. An unknown option or one without
 * its value exits 2 with a message naming cmd and the option. Set
 * optind = 0 before a command's first call (a full reset in GNU getopt). */
int sagactl_getopt(const char *cmd, int argc, char **argv, const struct option *opts);

/* A definition file's problems on stderr, one line each ("FILE: where:
 * what"), at most the 64 kept, then how many more there were. */
void print_problems(const char *file, const saga_def_problems *probs);

/* After sagactl_getopt: the one operand (a saga id, a name), NULL when
 * there is none; a second one exits 2 ("unexpected argument"). */
const char *sagactl_operand(const char *cmd, int argc, char **argv);

/* text as a whole decimal integer from min to max, else exit 2 naming the
 * command and option and what is expected. */
long parse_number(const char *cmd, const char *opt, const char *text, long min, long max);

/* The longest duration any option takes: ten years, far below what
 * PostgreSQL's interval and sagactl's millisecond clock can hold. */
#define SAGACTL_MAX_DURATION_MS (3650LL * 86400000LL)

/* text as a duration ("250ms", "30s", "5m", "1h30m") of at most
 * SAGACTL_MAX_DURATION_MS, else exit 2 naming the command and option;
 * example is shown as a valid value. */
int64_t parse_duration_opt(const char *cmd, const char *opt, const char *text,
                           const char *example);
/* Exit 2 with the same messages when ms (parsed by the caller) is out of
 * range or parse_rc is not 0. */
int64_t check_duration_opt(const char *cmd, const char *opt, const char *text,
                           const char *example, int parse_rc, int64_t ms);

/* Connect (exit 3 when unreachable; with need_schema, also when the
 * schema is not migrated). The caller PQfinish()es. */
PGconn *connect_db(int need_schema);

/* A query returning one JSON text; NULL when no row. Exits 3 on error. */
json_t *query_json(PGconn *db, const char *sql, int n, const char *const *params);

void print_json(json_t *j);

/* o[k] as a string, "-" when absent. Borrowed. */
const char *str(const json_t *o, const char *k);

/* Exit 2 unless id is a UUID, naming the command cmd. */
int check_uuid(const char *cmd, const char *id);

/* Colour codes when stdout is a terminal and NO_COLOR is unset, else "". */
const char *color_for_status(const char *status);
const char *color_reset(void);

/* "12s ago", "5m ago", "3.0h ago", "2.0d ago" for an age in seconds (negative:
 * "in 12s", a time still to come). */
void format_age(double seconds, char *buf, size_t size);

/* The database's clock (seconds since the epoch), which ages are measured
 * against: saga times are the database's, not this machine's. Falls back to
 * this machine's clock when the query fails. */
double db_now(PGconn *db);

/* An ISO 8601 UTC time from saga.iso() as people read it, absolute and
 * relative to now: "2026-12-01 07:50:01 (3m ago)"; with_ms keeps the
 * milliseconds (for timelines). "-" for NULL or "-". */
void format_when(const char *iso, double now, int with_ms, char *buf, size_t size);

/* The widest of w and strlen(s): human tables size their columns on the
 * data so that long names do not push the next columns out of line. */
int widen(int w, const char *s);

/* The value of limit name (saga.limits, migration 0011: max_input_bytes,
 * max_output_bytes, max_definition_bytes). Exits 3 when it cannot be
 * read. */
int64_t limit_bytes(PGconn *db, const char *name);

/* The commands, one file each or a few per file. */
int cmd_migrate(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_signal(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_history(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_retry(int argc, char **argv);
int cmd_compensate(int argc, char **argv);
int cmd_skip(int argc, char **argv);
int cmd_resolve(int argc, char **argv);
int cmd_stuck(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_defs(int argc, char **argv);
int cmd_purge(int argc, char **argv);
int cmd_dead(int argc, char **argv);
int cmd_limits(int argc, char **argv);
int cmd_roles(int argc, char **argv);
int cmd_tokens(int argc, char **argv);

#endif
