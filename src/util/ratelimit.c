/*
 * Token buckets (see ratelimit.h). Refill is computed lazily from the time
 * since the last accounting, in integer tokens; the fraction of a token not
 * yet earned stays in (now - last_ns) instead of being rounded away, so a
 * slow rate does not drift.
 */
#include "util/ratelimit.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define NS_PER_MS 1000000ULL

static bool bucket_on(const struct ratelimit_bucket_config *c)
{
	return c->size && c->refill_time_ms;
}

bool ratelimit_config_enabled(const struct ratelimit_config *cfg)
{
	return bucket_on(&cfg->bandwidth) || bucket_on(&cfg->ops);
}

static int bucket_check(const struct ratelimit_bucket_config *c, const char *what, const char *name,
			char *err, size_t errlen)
{
	if (c->size > RATELIMIT_MAX_SIZE || c->one_time_burst > RATELIMIT_MAX_SIZE) {
		snprintf(err, errlen, "%s.%s: size and one_time_burst must be at most %llu", what, name,
			 (unsigned long long)RATELIMIT_MAX_SIZE);
		return -EINVAL;
	}
	if (c->refill_time_ms > RATELIMIT_MAX_REFILL_MS) {
		snprintf(err, errlen, "%s.%s: refill_time must be at most %llu ms", what, name,
			 (unsigned long long)RATELIMIT_MAX_REFILL_MS);
		return -EINVAL;
	}
	/* A bucket that never refills, or refills nothing, would stall its queue forever. */
	if (!!c->size != !!c->refill_time_ms) {
		snprintf(err, errlen, "%s.%s: size and refill_time must both be set (or both 0 for no limit)",
			 what, name);
		return -EINVAL;
	}
	return 0;
}

int ratelimit_config_check(const struct ratelimit_config *cfg, const char *what, char *err, size_t errlen)
{
	int rc = bucket_check(&cfg->bandwidth, what, "bandwidth", err, errlen);

	return rc ? rc : bucket_check(&cfg->ops, what, "ops", err, errlen);
}

static void bucket_init(struct ratelimit_bucket *b, const struct ratelimit_bucket_config *c, uint64_t now_ns)
{
	b->cfg = *c;
	b->budget = (int64_t)c->size;
	b->burst_left = bucket_on(c) ? c->one_time_burst : 0;
	b->last_ns = now_ns;
}

void ratelimit_init(struct ratelimit *rl, const struct ratelimit_config *cfg, uint64_t now_ns)
{
	memset(rl, 0, sizeof(*rl));
	bucket_init(&rl->bw, &cfg->bandwidth, now_ns);
	bucket_init(&rl->ops, &cfg->ops, now_ns);
}

void ratelimit_update(struct ratelimit *rl, const struct ratelimit_config *cfg, uint64_t now_ns)
{
	uint64_t throttled = rl->throttled;

	ratelimit_init(rl, cfg, now_ns);
	rl->throttled = throttled;
}

bool ratelimit_enabled(const struct ratelimit *rl)
{
	return bucket_on(&rl->bw.cfg) || bucket_on(&rl->ops.cfg);
}

static void bucket_refill(struct ratelimit_bucket *b, uint64_t now_ns)
{
	unsigned __int128 period = (unsigned __int128)b->cfg.refill_time_ms * NS_PER_MS;
	unsigned __int128 earned;
	int64_t size = (int64_t)b->cfg.size;
	uint64_t elapsed;

	if (now_ns <= b->last_ns)
		return;
	if (b->budget >= size) {
		b->last_ns = now_ns;
		return;
	}
	elapsed = now_ns - b->last_ns;
	earned = (unsigned __int128)elapsed * b->cfg.size / period;
	if (earned >= (unsigned __int128)(size - b->budget)) {
		b->budget = size;
		b->last_ns = now_ns;
		return;
	}
	b->budget += (int64_t)earned;
	/* Advance only by the time those whole tokens took; the rest earns the next one. */
	b->last_ns += (uint64_t)(earned * period / b->cfg.size);
}

/* 0 if n tokens can be taken now, else ns until they can. Refilled first. */
static uint64_t bucket_wait(const struct ratelimit_bucket *b, uint64_t n, uint64_t now_ns)
{
	unsigned __int128 period = (unsigned __int128)b->cfg.refill_time_ms * NS_PER_MS;
	int64_t size = (int64_t)b->cfg.size;
	unsigned __int128 need, ns;

	if (!bucket_on(&b->cfg) || n <= b->burst_left)
		return 0;
	n -= b->burst_left;
	if (n > (uint64_t)size) {
		/* Over-size: goes when the bucket is full. */
		if (b->budget >= size)
			return 0;
		need = (unsigned __int128)(size - b->budget);
	} else {
		if (b->budget >= (int64_t)n)
			return 0;
		need = (unsigned __int128)((int64_t)n - b->budget);
	}
	/* Tokens still owed, in time; less what has already been earned towards the next one. */
	ns = (need * period + b->cfg.size - 1) / b->cfg.size;
	ns -= now_ns - b->last_ns < ns ? now_ns - b->last_ns : 0;
	return ns ? (uint64_t)ns : 1;
}

static void bucket_take(struct ratelimit_bucket *b, uint64_t n)
{
	uint64_t from_burst;

	if (!bucket_on(&b->cfg))
		return;
	from_burst = n < b->burst_left ? n : b->burst_left;
	b->burst_left -= from_burst;
	b->budget -= (int64_t)(n - from_burst);
}

uint64_t ratelimit_consume(struct ratelimit *rl, uint64_t bytes, uint64_t now_ns)
{
	uint64_t w_bw, w_ops;

	if (bytes > RATELIMIT_MAX_SIZE * 2)
		bytes = RATELIMIT_MAX_SIZE * 2;   /* keeps the budget's arithmetic in range */
	if (bucket_on(&rl->bw.cfg))
		bucket_refill(&rl->bw, now_ns);
	if (bucket_on(&rl->ops.cfg))
		bucket_refill(&rl->ops, now_ns);
	w_bw = bucket_wait(&rl->bw, bytes, now_ns);
	w_ops = bucket_wait(&rl->ops, 1, now_ns);
	if (w_bw || w_ops) {
		rl->throttled++;
		return w_bw > w_ops ? w_bw : w_ops;
	}
	bucket_take(&rl->bw, bytes);
	bucket_take(&rl->ops, 1);
	return 0;
}
