/* libsaga: the wire protocol between sagad and participant services.
 *
 * docs/PROTOCOL.md is the normative description; this header is its C
 * binding. sagad links these same functions, so both sides encode and
 * decode one way. */
#ifndef SAGA_PROTOCOL_H
#define SAGA_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "saga/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SAGA_PROTOCOL_VERSION 1
/* (0.5.0) The version of a command to one element of a fan-out step
 * ("for_each", docs/DEFINITIONS.md) and of its reply: version 1 plus
 * "element". Every other message stays version 1, so participants on an
 * older SDK go on working; one that cannot tell elements apart refuses an
 * element's command (its "v" is 2) instead of taking it for a duplicate. */
#define SAGA_PROTOCOL_VERSION_ELEMENTS 2
/* Elements of one fan-out step: 0 .. this - 1. */
#define SAGA_ELEMENTS_MAX 100000
/* Messages larger than this are rejected as malformed without parsing. */
#define SAGA_MESSAGE_MAX (1024 * 1024)
/* A saga id is a UUID in its 36-character text form. */
#define SAGA_ID_LEN 36
/* The ranges the decoders enforce (docs/PROTOCOL.md, "Field ranges"): what
 * sagad and PostgreSQL can hold. A value outside makes the message
 * malformed. */
#define SAGA_ATTEMPT_MAX     1000000           /* attempt: 1 .. this */
#define SAGA_RETRY_AFTER_MAX 2592000000LL      /* ms: 30 days */
#define SAGA_DEADLINE_MAX    253402300799999LL /* ms: 9999-12-31T23:59:59.999Z */
#define SAGA_NAME_MAX        255               /* saga, step_name, action, code */
#define SAGA_COMMAND_ID_MAX  255               /* bytes */
#define SAGA_TOPIC_MAX       249               /* Kafka's limit for reply_to */
/* An error message longer than this (bytes) is cut to it, not refused. */
#define SAGA_ERROR_MESSAGE_MAX 4096

typedef enum saga_phase {
    SAGA_PHASE_INVOKE = 0,     /* run the step's action */
    SAGA_PHASE_COMPENSATE = 1, /* undo it */
} saga_phase;

typedef enum saga_reply_status {
    SAGA_REPLY_OK = 0,     /* done; output carries the result */
    SAGA_REPLY_FAILED = 1, /* definite business failure: do not retry */
    SAGA_REPLY_RETRY = 2,  /* transient: try again later */
} saga_reply_status;

/* A command from sagad to a participant. Strings and payload are owned by
 * the struct after saga_command_decode(); saga_command_clear() frees them.
 * For saga_command_encode() the caller keeps ownership of everything. */
typedef struct saga_command {
    int v; /* SAGA_PROTOCOL_VERSION, or SAGA_PROTOCOL_VERSION_ELEMENTS for an
              element of a fan-out step (then element says which) */
    char saga_id[SAGA_ID_LEN + 1];
    char *saga;       /* definition name */
    int saga_version; /* definition version the saga runs */
    int step;         /* 0-based step index */
    char *step_name;  /* the step's name in the definition */
    saga_phase phase; /* invoke or compensate */
    char *action;     /* the action (or compensation) name */
    char *command_id; /* stable across retries of one step and phase */
    int attempt;      /* 1-based attempt within this step and phase */
    int64_t deadline; /* ms since the Unix epoch; 0 = none */
    char *reply_to;   /* topic to send the reply to */
    json_t *payload;  /* the step's resolved input (a JSON object) */
    /* The command's W3C `traceparent` Kafka header (not part of the JSON):
     * the saga's trace id and this attempt's span id. NULL when the
     * message had none. Filled by libsaga's participant before a handler
     * runs; owned like the strings above (saga_command_clear frees it);
     * saga_command_decode leaves it NULL. See saga_command_trace(). */
    char *traceparent;
    /* (0.5.0) v == SAGA_PROTOCOL_VERSION_ELEMENTS: the element's 0-based
     * index in the fan-out step's list (the command id and the barrier
     * tell elements apart by it); otherwise 0 and not sent. */
    int element;
} saga_command;

/* A reply from a participant to sagad. Ownership as for saga_command. */
typedef struct saga_reply {
    int v; /* as the command's: a reply to an element's command is version 2 */
    char saga_id[SAGA_ID_LEN + 1];
    int step;
    saga_phase phase;
    char *command_id;
    int attempt;
    saga_reply_status status;
    json_t *output;      /* status ok: the step's output (object), may be NULL */
    char *error_code;    /* status failed/retry: short machine code, may be NULL */
    char *error_message; /* status failed/retry: human text, may be NULL */
    int64_t retry_after; /* status retry: hint in ms, 0 = use policy */
    int element;         /* (0.5.0) as saga_command's element */
} saga_reply;

/* The wire name of a phase: "invoke" or "compensate". A value outside
 * the enum gives "invoke" (the name of phase 0), so check a phase you did
 * not decode yourself. Static, never NULL; thread-safe. */
SAGA_API const char *saga_phase_name(saga_phase phase);

/* Parse a wire name ("invoke", "compensate"; exact, case-sensitive) into
 * *out. SAGA_OK, or SAGA_EINVAL for any other text, NULL text or NULL out
 * (*out is then unchanged). Thread-safe. */
SAGA_API int saga_phase_parse(const char *text, saga_phase *out);

/* The wire name of a reply status: "ok", "failed" or "retry"; "?" for a
 * value outside the enum. Static, never NULL; thread-safe. */
SAGA_API const char *saga_reply_status_name(saga_reply_status status);

/* Parse a wire name ("ok", "failed", "retry"; exact, case-sensitive) into
 * *out. SAGA_OK, or SAGA_EINVAL for any other text, NULL text or NULL out
 * (*out is then unchanged). Thread-safe. */
SAGA_API int saga_reply_status_parse(const char *text, saga_reply_status *out);

/* Encode cmd as the JSON text of docs/PROTOCOL.md (without the
 * traceparent, which travels as a Kafka header). The caller keeps cmd;
 * on success *out is a NUL-terminated malloc()ed string the caller frees
 * with free(), and *len (len may be NULL) its length. SAGA_EINVAL for NULL
 * cmd or out or a missing string field (err names them), SAGA_ENOMEM.
 * Thread-safe. */
SAGA_API int saga_command_encode(const saga_command *cmd, char **out, size_t *len,
                                 saga_error *err);

/* Encode reply as for saga_command_encode: the output for status ok, the
 * error object otherwise. SAGA_EINVAL for NULL reply or out or no
 * command_id, SAGA_ENOMEM. Thread-safe. */
SAGA_API int saga_reply_encode(const saga_reply *reply, char **out, size_t *len,
                               saga_error *err);

/* Decode a command from len bytes (not necessarily NUL-terminated; at most
 * SAGA_MESSAGE_MAX). On success *out owns its strings and payload (free
 * them with saga_command_clear); on failure *out is left cleared and err
 * says which field is wrong and why (SAGA_EPROTO; SAGA_EINVAL for NULL
 * out). Thread-safe. */
SAGA_API int saga_command_decode(const char *buf, size_t len, saga_command *out,
                                 saga_error *err);

/* Decode a reply; as saga_command_decode (free with saga_reply_clear). */
SAGA_API int saga_reply_decode(const char *buf, size_t len, saga_reply *out,
                               saga_error *err);

/* Free what a decoded command owns (strings, payload, traceparent) and
 * zero it. Safe on NULL and on a zeroed struct; do not use on a command
 * whose fields the caller owns (one filled for saga_command_encode). */
SAGA_API void saga_command_clear(saga_command *cmd);

/* Free what a decoded reply owns and zero it; as saga_command_clear. */
SAGA_API void saga_reply_clear(saga_reply *reply);

/* The command id for a step and phase of a saga: "<saga_id>/<step>/<phase>".
 * Writes at most size bytes including the NUL into buf (buf may be NULL
 * when size is 0, to measure); returns the length it needed, as snprintf
 * does, or SAGA_EINVAL for a NULL saga_id or a NULL buf with size > 0.
 * Thread-safe. */
SAGA_API int saga_command_id_format(char *buf, size_t size, const char *saga_id, int step,
                                    saga_phase phase);

/* (0.5.0) The command id of element `element` of a fan-out step:
 * "<saga_id>/<step>/<phase>/<element>"; a negative element gives
 * saga_command_id_format's. As saga_command_id_format otherwise. */
SAGA_API int saga_command_id_format_element(char *buf, size_t size, const char *saga_id,
                                            int step, saga_phase phase, int element);

/* 1 if s can name a Kafka topic (1 to SAGA_TOPIC_MAX letters, digits,
 * '.', '_' or '-'; not "." or ".."), else 0 (also for NULL). A command's
 * reply_to must pass it to decode. Thread-safe. */
SAGA_API int saga_topic_name_valid(const char *s);

#ifdef __cplusplus
}
#endif

#endif
