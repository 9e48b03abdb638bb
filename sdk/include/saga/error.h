/* libsaga: the version, error codes and the error value every fallible
 * call fills in. Every other public header includes this one, so each of
 * them gives the SAGA_VERSION_* macros too. */
#ifndef SAGA_ERROR_H
#define SAGA_ERROR_H

/* The version of these headers. sdk/libsaga.pc.in's Version must say the
 * same (tests/unit/test_exports.sh checks it). */
#define SAGA_VERSION_MAJOR  0
#define SAGA_VERSION_MINOR  5
#define SAGA_VERSION_PATCH  1
#define SAGA_VERSION_STRING "0.5.1"
/* For #if comparisons: 0xMMmmpp. */
#define SAGA_VERSION_NUM                                                                 \
    ((SAGA_VERSION_MAJOR << 16) | (SAGA_VERSION_MINOR << 8) | SAGA_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the public API: the shared library exports these and nothing else. */
#if defined(__GNUC__)
#define SAGA_API __attribute__((visibility("default")))
#else
#define SAGA_API
#endif

/* Every fallible libsaga function returns one of these (0 on success). */
typedef enum saga_err {
    SAGA_OK = 0,
    SAGA_EINVAL = -1,    /* an argument is invalid (NULL, out of range) */
    SAGA_ENOMEM = -2,    /* allocation failed */
    SAGA_EPROTO = -3,    /* a message does not follow docs/PROTOCOL.md */
    SAGA_EKAFKA = -4,    /* the Kafka client or broker reported an error */
    SAGA_EDB = -5,       /* PostgreSQL reported an error */
    SAGA_EEXIST = -6,    /* already registered / already done */
    SAGA_ENOTFOUND = -7, /* no such saga, step, definition or handler */
    SAGA_ESTATE = -8,    /* the call is not valid in the current state */
    SAGA_EDEF = -9,      /* a saga definition is invalid */
    SAGA_EIO = -10,      /* reading or writing a file failed */
    SAGA_EAUTH = -11,    /* a message's signature is missing or wrong */
} saga_err;

/* Detail for a failed call: the code plus a human-readable message that
 * names what was wrong and where. Callers own it (usually on the stack);
 * functions fill it only on failure, and accept NULL when the caller does
 * not want the detail. One exception, said where it applies:
 * saga_client_status and saga_client_wait return SAGA_OK for a `rejected`
 * request and fill err with code SAGA_OK and the reason. */
typedef struct saga_error {
    int code;
    char message[512];
} saga_error;

/* A static, never-NULL description of an error code. Thread-safe. */
SAGA_API const char *saga_strerror(int code);

/* The version of the libsaga actually running, which can differ from the
 * headers a program was built with (SAGA_VERSION_STRING, SAGA_VERSION_NUM)
 * when a shared library was upgraded under it: "MAJOR.MINOR.PATCH" (static)
 * and 0xMMmmpp. Thread-safe. */
SAGA_API const char *saga_version(void);
SAGA_API int saga_version_num(void);

#ifdef __cplusplus
}
#endif

#endif
