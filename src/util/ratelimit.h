/*
 * Token-bucket rate limiter with Firecracker's semantics: two independent
 * buckets, bandwidth (bytes) and operations. Each bucket holds up to `size`
 * tokens and refills at size / refill_time; `one_time_burst` is an extra
 * budget available once at start that never refills and is spent before the
 * bucket. A request larger than the bucket passes once the bucket is full
 * and leaves the bucket owing the excess (it refills from below zero), so
 * the long-run rate holds.
 *
 * The clock is passed in (now_ns, CLOCK_MONOTONIC for real users) so tests
 * drive it. Not thread-safe: each limiter belongs to one device queue and is
 * used under that device's lock.
 */
#ifndef KESTREL_RATELIMIT_H
#define KESTREL_RATELIMIT_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Firecracker's TokenBucket. size 0 or refill_time_ms 0: no limit on this resource. */
struct ratelimit_bucket_config {
	uint64_t size;
	uint64_t one_time_burst;
	uint64_t refill_time_ms;
};

/* Firecracker's RateLimiter: all zero is "no limiter". */
struct ratelimit_config {
	struct ratelimit_bucket_config bandwidth;   /* bytes */
	struct ratelimit_bucket_config ops;         /* requests */
};

/* Bounds that keep the arithmetic exact in 128 bits with room to spare. */
#define RATELIMIT_MAX_SIZE        (1ULL << 50)
#define RATELIMIT_MAX_REFILL_MS   (1000ULL * 3600 * 24)   /* one day */

struct ratelimit_bucket {
	struct ratelimit_bucket_config cfg;
	int64_t budget;          /* may go below zero after an over-size request */
	uint64_t burst_left;     /* one_time_burst not yet spent */
	uint64_t last_ns;        /* refill accounted up to here */
};

struct ratelimit {
	struct ratelimit_bucket bw, ops;
	uint64_t throttled;      /* requests refused (each refusal counts once) */
};

bool ratelimit_config_enabled(const struct ratelimit_config *cfg);
/* 0, or -EINVAL with a one-line message naming `what` (e.g. "rate_limiter.bandwidth"). */
KESTREL_MUST_CHECK int ratelimit_config_check(const struct ratelimit_config *cfg, const char *what, char *err,
					      size_t errlen);

/* Full buckets, the one-time bursts available. cfg must have passed ratelimit_config_check. */
void ratelimit_init(struct ratelimit *rl, const struct ratelimit_config *cfg, uint64_t now_ns);
/*
 * Replace the configuration on a running limiter (Firecracker's PATCH):
 * buckets start full again with their new one-time bursts, as a new
 * limiter would; the throttle counter is kept.
 */
void ratelimit_update(struct ratelimit *rl, const struct ratelimit_config *cfg, uint64_t now_ns);
bool ratelimit_enabled(const struct ratelimit *rl);

/*
 * Take `bytes` bandwidth tokens and one op token, both or neither. Returns
 * 0 when the request may go, else the nanoseconds until it could (the
 * caller keeps the request and retries then; the counter `throttled` has
 * gone up by one).
 */
uint64_t ratelimit_consume(struct ratelimit *rl, uint64_t bytes, uint64_t now_ns);

#endif
