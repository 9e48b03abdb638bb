/* The clocks libsaga and sagad read, in one place: a monotonic clock for
 * durations, deadlines and rate limits (it never jumps), the wall clock
 * for what is stored and shown. Header-only (static inline): shared by the
 * SDK and the orchestrator without exporting anything. */
#ifndef SAGA_CLOCK_H
#define SAGA_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic nanoseconds since an arbitrary start. */
static inline int64_t saga__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t saga__mono_us(void)
{
    return saga__mono_ns() / 1000;
}

static inline int64_t saga__mono_ms(void)
{
    return saga__mono_ns() / 1000000;
}

/* Wall-clock milliseconds since the Unix epoch. */
static inline int64_t saga__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
