/* saga_bulkhead.h - a cap on commands in flight per participant service, so
 * that one slow service cannot take every slot of the engine.
 *
 * Acquire before sending a command, release when its reply arrives, it
 * times out, or it is not sent after all. Each service has a limit: the
 * one set with saga_bulkhead_set_limit(), else the default. Pure
 * bookkeeping: no I/O, no clock, bounded memory (max_services).
 *
 * Thread safety: none; one thread (the engine loop) uses a bulkhead. */
#ifndef SAGA_BULKHEAD_H
#define SAGA_BULKHEAD_H

typedef struct saga_bulkhead saga_bulkhead;

/* Create a bulkhead. default_limit: the cap for services without their own
 * (0 = unlimited; negative is SAGA_EINVAL). max_services bounds the tracked
 * services (<= 0: 256). *out is NULL on failure, owned by the caller on
 * success: saga_bulkhead_free(). Returns SAGA_OK, SAGA_EINVAL, SAGA_ENOMEM. */
int saga_bulkhead_new(int default_limit, int max_services, saga_bulkhead **out);

/* NULL is a no-op. */
void saga_bulkhead_free(saga_bulkhead *b);

/* Give service its own cap (0 = unlimited); commands already in flight
 * stay in flight even when the new limit is lower. SAGA_EINVAL for NULL or
 * a negative limit, SAGA_ENOMEM when the table is full. */
int saga_bulkhead_set_limit(saga_bulkhead *b, const char *service, int limit);

/* Take one slot of service. SAGA_OK, or SAGA_ESTATE when the service is at
 * its cap (nothing changes: try again after a release), SAGA_ENOMEM when
 * max_services are tracked with commands in flight or own limits,
 * SAGA_EINVAL for NULL. */
int saga_bulkhead_acquire(saga_bulkhead *b, const char *service);

/* Give one slot of service back. SAGA_ESTATE when none is held (a double
 * release: nothing changes), SAGA_EINVAL for NULL. */
int saga_bulkhead_release(saga_bulkhead *b, const char *service);

/* Commands in flight for service (0 for one never seen, or NULL). */
int saga_bulkhead_in_flight(const saga_bulkhead *b, const char *service);

/* The cap that applies to service (0 = unlimited). */
int saga_bulkhead_limit(const saga_bulkhead *b, const char *service);

#endif
