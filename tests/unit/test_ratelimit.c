/* src/util/ratelimit: token arithmetic on an injected clock. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/ratelimit.h"

#define MS 1000000ULL
#define T0 (1000 * MS)      /* an arbitrary start, not zero */

static struct ratelimit_config ops_only(uint64_t size, uint64_t burst, uint64_t refill_ms)
{
	struct ratelimit_config c = { .ops = { size, burst, refill_ms } };
	return c;
}

/* A full bucket of 10 ops per 100 ms: 10 go at once, the 11th waits exactly one token's time (10 ms). */
static void test_ops_burst_then_refill(void **state)
{
	struct ratelimit_config c = ops_only(10, 0, 100);
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl, &c, T0);
	assert_true(ratelimit_enabled(&rl));
	for (int i = 0; i < 10; i++)
		assert_int_equal(ratelimit_consume(&rl, 0, T0), 0);
	assert_int_equal(ratelimit_consume(&rl, 0, T0), 10 * MS);
	assert_int_equal(rl.throttled, 1);
	/* 4 ms in: 6 ms left. */
	assert_int_equal(ratelimit_consume(&rl, 0, T0 + 4 * MS), 6 * MS);
	assert_int_equal(rl.throttled, 2);
	assert_int_equal(ratelimit_consume(&rl, 0, T0 + 10 * MS), 0);
	assert_int_equal(ratelimit_consume(&rl, 0, T0 + 10 * MS), 10 * MS);
	/* Long idle: the bucket caps at size, not more. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(ratelimit_consume(&rl, 0, T0 + 10000 * MS), 0);
	assert_true(ratelimit_consume(&rl, 0, T0 + 10000 * MS) > 0);
}

/* The long-run rate is size/refill_time, with no drift from rounding (3 tokens per 1000 ms). */
static void test_rate_no_drift(void **state)
{
	struct ratelimit_config c = ops_only(3, 0, 1000);
	struct ratelimit rl;
	uint64_t now = T0, granted = 0;

	(void)state;
	ratelimit_init(&rl, &c, now);
	while (now < T0 + 60000 * MS) {
		uint64_t w = ratelimit_consume(&rl, 0, now);

		if (w == 0)
			granted++;
		else
			now += w;
	}
	/* 3 at start, then 3 per second for 60 s (the last one lands exactly at the end). */
	assert_true(granted >= 3 + 180 - 1 && granted <= 3 + 180 + 1);
}

/* one_time_burst goes first and never comes back. */
static void test_one_time_burst(void **state)
{
	struct ratelimit_config c = { .bandwidth = { 1000, 5000, 1000 } };
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl, &c, T0);
	assert_int_equal(ratelimit_consume(&rl, 5000, T0), 0);   /* all from the burst */
	assert_int_equal(ratelimit_consume(&rl, 1000, T0), 0);   /* the bucket */
	assert_int_equal(ratelimit_consume(&rl, 1, T0), 1 * MS);
	/* After a long idle only the bucket is back, the burst is not. */
	assert_int_equal(ratelimit_consume(&rl, 1000, T0 + 100000 * MS), 0);
	assert_int_equal(ratelimit_consume(&rl, 500, T0 + 100000 * MS), 500 * MS);
	/* The burst and the bucket together serve a request neither covers alone. */
	ratelimit_init(&rl, &c, T0);
	assert_int_equal(ratelimit_consume(&rl, 5500, T0), 0);
	assert_int_equal(ratelimit_consume(&rl, 500, T0), 0);
	assert_int_equal(ratelimit_consume(&rl, 1, T0), 1 * MS);
}

/* Larger than the bucket: goes once the bucket is full, then the bucket owes the excess. */
static void test_oversize(void **state)
{
	struct ratelimit_config c = { .bandwidth = { 1000, 0, 1000 } };   /* 1000 B/s */
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl, &c, T0);
	assert_int_equal(ratelimit_consume(&rl, 100, T0), 0);
	/* Not full: waits for the 100 bytes to come back. */
	assert_int_equal(ratelimit_consume(&rl, 3000, T0), 100 * MS);
	assert_int_equal(ratelimit_consume(&rl, 3000, T0 + 100 * MS), 0);
	/* Budget is now -2000: a 1-byte request waits 2001 ms. */
	assert_int_equal(ratelimit_consume(&rl, 1, T0 + 100 * MS), 2001 * MS);
	assert_int_equal(ratelimit_consume(&rl, 1, T0 + 2101 * MS), 0);
}

/* Both buckets or neither: a refusal by one takes nothing from the other. */
static void test_both_buckets(void **state)
{
	struct ratelimit_config c = { .bandwidth = { 4096, 0, 1000 }, .ops = { 100, 0, 1000 } };
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl, &c, T0);
	assert_int_equal(ratelimit_consume(&rl, 4096, T0), 0);
	assert_int_equal(rl.ops.budget, 99);
	assert_true(ratelimit_consume(&rl, 4096, T0) > 0);
	assert_int_equal(rl.ops.budget, 99);     /* the refused request took no op */
	/* Ops run out while bytes are plenty. */
	ratelimit_init(&rl, &c, T0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(ratelimit_consume(&rl, 1, T0), 0);
	assert_int_equal(ratelimit_consume(&rl, 1, T0), 10 * MS);
	assert_int_equal(rl.bw.budget, 4096 - 100);
}

/* Zero size or refill_time: no limit; update keeps the counter and starts full. */
static void test_disabled_and_update(void **state)
{
	struct ratelimit_config off = { 0 }, c = ops_only(1, 0, 1000);
	struct ratelimit rl;

	(void)state;
	ratelimit_init(&rl, &off, T0);
	assert_false(ratelimit_enabled(&rl));
	assert_false(ratelimit_config_enabled(&off));
	for (int i = 0; i < 1000; i++)
		assert_int_equal(ratelimit_consume(&rl, 1ULL << 40, T0), 0);
	assert_int_equal(rl.throttled, 0);
	ratelimit_update(&rl, &c, T0);
	assert_int_equal(ratelimit_consume(&rl, 0, T0), 0);
	assert_int_equal(ratelimit_consume(&rl, 0, T0), 1000 * MS);
	assert_int_equal(rl.throttled, 1);
	ratelimit_update(&rl, &off, T0);
	assert_int_equal(ratelimit_consume(&rl, 0, T0), 0);
	assert_int_equal(rl.throttled, 1);
	/* A clock that does not move forward grants nothing new and does not underflow. */
	ratelimit_init(&rl, &c, T0);
	assert_int_equal(ratelimit_consume(&rl, 0, T0), 0);
	assert_true(ratelimit_consume(&rl, 0, T0 - 5 * MS) > 0);
}

static void test_config_check(void **state)
{
	struct ratelimit_config c;
	char err[160];

	(void)state;
	c = ops_only(0, 0, 0);
	assert_int_equal(ratelimit_config_check(&c, "rl", err, sizeof(err)), 0);
	c = ops_only(10, 5, 100);
	assert_int_equal(ratelimit_config_check(&c, "rl", err, sizeof(err)), 0);
	c = ops_only(10, 0, 0);
	assert_int_equal(ratelimit_config_check(&c, "rl", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "rl.ops"));
	c = ops_only(0, 0, 100);
	assert_int_equal(ratelimit_config_check(&c, "rl", err, sizeof(err)), -EINVAL);
	c = ops_only(RATELIMIT_MAX_SIZE + 1, 0, 100);
	assert_int_equal(ratelimit_config_check(&c, "rl", err, sizeof(err)), -EINVAL);
	c = ops_only(10, 0, RATELIMIT_MAX_REFILL_MS + 1);
	assert_int_equal(ratelimit_config_check(&c, "rl", err, sizeof(err)), -EINVAL);
	c = (struct ratelimit_config){ .bandwidth = { 10, RATELIMIT_MAX_SIZE + 1, 10 } };
	assert_int_equal(ratelimit_config_check(&c, "rl", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "rl.bandwidth"));
	/* The largest accepted values still compute (128-bit products). */
	c = (struct ratelimit_config){ .bandwidth = { RATELIMIT_MAX_SIZE, 0, RATELIMIT_MAX_REFILL_MS } };
	{
		struct ratelimit rl;

		ratelimit_init(&rl, &c, T0);
		assert_int_equal(ratelimit_consume(&rl, RATELIMIT_MAX_SIZE, T0), 0);
		assert_int_equal(ratelimit_consume(&rl, 1, T0), 1);   /* 1 token of 2^50/day: < 1 ns, rounded up */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ops_burst_then_refill),
		cmocka_unit_test(test_rate_no_drift),
		cmocka_unit_test(test_one_time_burst),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test(test_both_buckets),
		cmocka_unit_test(test_disabled_and_update),
		cmocka_unit_test(test_config_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
