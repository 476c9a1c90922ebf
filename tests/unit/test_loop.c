/* The event loop: fds beyond the old fixed table, deletion during dispatch, timers, posted work. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop/loop.h"

#define MS 1000000ull

/* Run until *done reaches want or about two seconds pass. */
static void run_until(struct loop *l, const int *done, int want)
{
	uint64_t end = loop_now_ns() + 2000 * MS;

	while (__atomic_load_n(done, __ATOMIC_ACQUIRE) < want && loop_now_ns() < end)
		assert_true(loop_run_once(l, 10) >= 0);
}

static void kick(int fd)
{
	uint64_t one = 1;

	assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
}

/* ---- fds ---- */

static void test_bad_args(void **state)
{
	struct loop *l = loop_new();
	int fd = eventfd(0, EFD_NONBLOCK);

	(void)state;
	assert_non_null(l);
	assert_int_equal(loop_add(l, -1, EPOLLIN, (loop_cb)abort, NULL), -EINVAL);
	assert_int_equal(loop_add(l, fd, EPOLLIN, NULL, NULL), -EINVAL);
	assert_int_equal(loop_add(l, fd, EPOLLIN, (loop_cb)abort, NULL), 0);
	assert_int_equal(loop_add(l, fd, EPOLLIN, (loop_cb)abort, NULL), -EINVAL);
	assert_int_equal(loop_del(l, fd), 0);
	assert_int_equal(loop_del(l, fd), -ENOENT);
	assert_int_equal(loop_del(l, -1), -ENOENT);
	assert_int_equal(loop_del(l, 100000), -ENOENT);
	assert_int_equal(loop_mod(l, fd, EPOLLIN), -ENOENT);
	assert_int_equal(loop_mod(l, -5, EPOLLIN), -ENOENT);
	/* A closed fd number: epoll refuses it, the loop reports it and keeps nothing. */
	close(fd);
	assert_int_equal(loop_add(l, fd, EPOLLIN, (loop_cb)abort, NULL), -EBADF);
	assert_int_equal(loop_del(l, fd), -ENOENT);
	/* Nothing to do: a timeout dispatches nothing. */
	assert_int_equal(loop_run_once(l, 0), 0);
	loop_free(l);
	loop_free(NULL);
}

#define MANY_FDS 300

struct many {
	int fds[MANY_FDS];
	int hits[MANY_FDS];
	int done;
	struct loop *l;
};

struct many_ctx {
	struct many *m;
	int i;
};

static void many_ctx_cb(void *opaque, uint32_t events)
{
	struct many_ctx *c = opaque;
	uint64_t v;

	(void)events;
	assert_int_equal(read(c->m->fds[c->i], &v, sizeof(v)), sizeof(v));
	c->m->hits[c->i]++;
	c->m->done++;
}

static void test_many_fds(void **state)
{
	struct many *m = calloc(1, sizeof(*m));
	struct many_ctx *ctx = calloc(MANY_FDS, sizeof(*ctx));
	int ran = 0;

	(void)state;
	m->l = loop_new();
	assert_non_null(m->l);
	for (int i = 0; i < MANY_FDS; i++) {
		m->fds[i] = eventfd(0, EFD_NONBLOCK);
		assert_true(m->fds[i] >= 0);
		ctx[i] = (struct many_ctx){ m, i };
		assert_int_equal(loop_add(m->l, m->fds[i], EPOLLIN, many_ctx_cb, &ctx[i]), 0);
	}
	for (int i = 0; i < MANY_FDS; i++)
		kick(m->fds[i]);
	/* Several rounds: one epoll_wait fetches a bounded batch. */
	for (int round = 0; round < 100 && m->done < MANY_FDS; round++)
		ran += loop_run_once(m->l, 100);
	assert_int_equal(m->done, MANY_FDS);
	assert_int_equal(ran, MANY_FDS);
	for (int i = 0; i < MANY_FDS; i++)
		assert_int_equal(m->hits[i], 1);
	/* Fds above the first table size can be modified and removed too. */
	assert_int_equal(loop_mod(m->l, m->fds[MANY_FDS - 1], 0), 0);
	kick(m->fds[MANY_FDS - 1]);
	assert_int_equal(loop_run_once(m->l, 0), 0);
	for (int i = 0; i < MANY_FDS; i++) {
		assert_int_equal(loop_del(m->l, m->fds[i]), 0);
		close(m->fds[i]);
	}
	loop_free(m->l);
	free(ctx);
	free(m);
}

struct deleter {
	struct loop *l;
	int a, b;
	int calls;
	bool readd;
	int readd_calls;
};

static void readd_cb(void *opaque, uint32_t events)
{
	struct deleter *d = opaque;

	(void)events;
	d->readd_calls++;
}

/* Whichever of the two runs first removes both: the other must not run in this round. */
static void deleter_cb(void *opaque, uint32_t events)
{
	struct deleter *d = opaque;

	(void)events;
	d->calls++;
	assert_int_equal(loop_del(d->l, d->a), 0);
	assert_int_equal(loop_del(d->l, d->b), 0);
	if (d->readd) {
		/* The same fd numbers come back at once with a new callback (both still readable). */
		assert_int_equal(loop_add(d->l, d->a, EPOLLIN, readd_cb, d), 0);
		assert_int_equal(loop_add(d->l, d->b, EPOLLIN, readd_cb, d), 0);
	}
}

static void test_delete_during_dispatch(void **state)
{
	struct deleter d = { .l = loop_new() };

	(void)state;
	d.a = eventfd(0, EFD_NONBLOCK);
	d.b = eventfd(0, EFD_NONBLOCK);
	assert_int_equal(loop_add(d.l, d.a, EPOLLIN, deleter_cb, &d), 0);
	assert_int_equal(loop_add(d.l, d.b, EPOLLIN, deleter_cb, &d), 0);
	kick(d.a);
	kick(d.b);
	assert_int_equal(loop_run_once(d.l, 100), 1);
	assert_int_equal(d.calls, 1);
	/* Both gone: nothing more runs although both are still readable. */
	assert_int_equal(loop_run_once(d.l, 0), 0);

	/* Delete and re-add in the same round: the stale event does not reach the new callback's owner twice. */
	d.readd = true;
	d.calls = 0;
	assert_int_equal(loop_add(d.l, d.a, EPOLLIN, deleter_cb, &d), 0);
	assert_int_equal(loop_add(d.l, d.b, EPOLLIN, deleter_cb, &d), 0);
	assert_int_equal(loop_run_once(d.l, 100), 1);
	assert_int_equal(d.calls, 1);
	assert_int_equal(d.readd_calls, 0);
	/* Next round, the new registrations see the level-triggered events. */
	assert_int_equal(loop_run_once(d.l, 100), 2);
	assert_int_equal(d.readd_calls, 2);
	loop_del(d.l, d.a);
	loop_del(d.l, d.b);
	close(d.a);
	close(d.b);
	loop_free(d.l);
}

static void self_delete_cb(void *opaque, uint32_t events)
{
	struct deleter *d = opaque;

	(void)events;
	d->calls++;
	assert_int_equal(loop_del(d->l, d->a), 0);
	close(d->a);
}

static void test_delete_self(void **state)
{
	struct deleter d = { .l = loop_new() };

	(void)state;
	d.a = eventfd(0, EFD_NONBLOCK);
	assert_int_equal(loop_add(d.l, d.a, EPOLLIN, self_delete_cb, &d), 0);
	kick(d.a);
	assert_int_equal(loop_run_once(d.l, 100), 1);
	assert_int_equal(loop_run_once(d.l, 0), 0);
	assert_int_equal(d.calls, 1);
	loop_free(d.l);
}

/* ---- timers ---- */

struct trec {
	struct loop *l;
	struct loop_timer t[4];
	int order[16];
	int n;
	int victim;             /* timer the next callback cancels, -1: none */
	int rearm;              /* times timer 0 re-arms itself */
};

struct tctx {
	struct trec *r;
	int idx;
};

static void tctx_cb(void *opaque)
{
	struct tctx *c = opaque;
	struct trec *r = c->r;

	assert_true(r->n < 16);
	r->order[r->n++] = c->idx;
	if (r->victim >= 0) {
		loop_timer_cancel(&r->t[r->victim]);
		r->victim = -1;
	}
	if (c->idx == 0 && r->rearm > 0) {
		r->rearm--;
		loop_timer_arm(&r->t[0], 1 * MS, 0);
	}
}

static void trec_init(struct trec *r, struct tctx *c)
{
	memset(r, 0, sizeof(*r));
	r->l = loop_new();
	assert_non_null(r->l);
	r->victim = -1;
	for (int i = 0; i < 4; i++) {
		c[i] = (struct tctx){ r, i };
		loop_timer_init(&r->t[i], r->l, tctx_cb, &c[i]);
	}
}

static void test_timer_order(void **state)
{
	struct trec r;
	struct tctx c[4];
	uint64_t start;

	(void)state;
	trec_init(&r, c);
	start = loop_now_ns();
	loop_timer_arm(&r.t[0], 30 * MS, 0);
	loop_timer_arm(&r.t[1], 10 * MS, 0);
	loop_timer_arm(&r.t[2], 20 * MS, 0);
	/* Same absolute deadline as t[2] but armed later: runs after it. */
	loop_timer_arm_at(&r.t[3], r.t[2].deadline_ns, 0);
	assert_true(loop_timer_armed(&r.t[0]));
	run_until(r.l, &r.n, 4);
	assert_int_equal(r.n, 4);
	assert_int_equal(r.order[0], 1);
	assert_int_equal(r.order[1], 2);
	assert_int_equal(r.order[2], 3);
	assert_int_equal(r.order[3], 0);
	/* Not before their time. */
	assert_true(loop_now_ns() - start >= 30 * MS);
	for (int i = 0; i < 4; i++)
		assert_false(loop_timer_armed(&r.t[i]));
	/* One-shot: nothing fires again. */
	assert_int_equal(loop_run_once(r.l, 50), 0);
	assert_int_equal(r.n, 4);
	loop_free(r.l);
}

static void test_timer_rearm_earlier(void **state)
{
	struct trec r;
	struct tctx c[4];

	(void)state;
	trec_init(&r, c);
	loop_timer_arm(&r.t[0], 10 * 1000 * MS, 0);
	loop_timer_arm(&r.t[1], 20 * MS, 0);
	/* Re-arming replaces: t[0] moves from 10 s to 5 ms, ahead of t[1]. */
	loop_timer_arm(&r.t[0], 5 * MS, 0);
	run_until(r.l, &r.n, 2);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.order[0], 0);
	assert_int_equal(r.order[1], 1);
	loop_free(r.l);
}

static void test_timer_periodic(void **state)
{
	struct trec r;
	struct tctx c[4];
	uint64_t start;

	(void)state;
	trec_init(&r, c);
	start = loop_now_ns();
	loop_timer_arm(&r.t[0], 5 * MS, 5 * MS);
	run_until(r.l, &r.n, 4);
	assert_int_equal(r.n, 4);
	assert_true(loop_now_ns() - start >= 20 * MS);
	assert_true(loop_timer_armed(&r.t[0]));
	loop_timer_cancel(&r.t[0]);
	assert_false(loop_timer_armed(&r.t[0]));
	assert_int_equal(loop_run_once(r.l, 30), 0);
	assert_int_equal(r.n, 4);
	/* Cancelling what is not armed is harmless. */
	loop_timer_cancel(&r.t[0]);
	loop_free(r.l);
}

static void test_timer_cancel_in_callback(void **state)
{
	struct trec r;
	struct tctx c[4];

	(void)state;
	trec_init(&r, c);
	/* Both due in the same round: the first cancels the second, which must not run. */
	loop_timer_arm(&r.t[0], 5 * MS, 0);
	loop_timer_arm_at(&r.t[1], r.t[0].deadline_ns, 0);
	loop_timer_arm(&r.t[2], 30 * MS, 0);
	r.victim = 1;
	run_until(r.l, &r.n, 2);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.order[0], 0);
	assert_int_equal(r.order[1], 2);
	assert_false(loop_timer_armed(&r.t[1]));
	loop_free(r.l);
}

static void test_timer_cancel_self_periodic(void **state)
{
	struct trec r;
	struct tctx c[4];

	(void)state;
	trec_init(&r, c);
	/* A periodic timer that cancels itself in its callback runs once. */
	loop_timer_arm(&r.t[0], 2 * MS, 2 * MS);
	r.victim = 0;
	run_until(r.l, &r.n, 1);
	assert_int_equal(loop_run_once(r.l, 20), 0);
	assert_int_equal(r.n, 1);
	assert_false(loop_timer_armed(&r.t[0]));
	loop_free(r.l);
}

static void test_timer_rearm_in_callback(void **state)
{
	struct trec r;
	struct tctx c[4];

	(void)state;
	trec_init(&r, c);
	r.rearm = 3;
	loop_timer_arm(&r.t[0], 1 * MS, 0);
	run_until(r.l, &r.n, 4);
	assert_int_equal(r.n, 4);
	assert_false(loop_timer_armed(&r.t[0]));
	loop_free(r.l);
}

/* ---- posted work ---- */

struct post {
	struct loop *l;
	pthread_t loop_thread;
	int runs;
	int wrong_thread;
	struct loop_work w;
};

static void post_fn(void *opaque)
{
	struct post *p = opaque;

	if (!pthread_equal(pthread_self(), p->loop_thread))
		p->wrong_thread++;
	__atomic_add_fetch(&p->runs, 1, __ATOMIC_RELEASE);
}

#define POSTS 1000

static void *poster(void *arg)
{
	struct post *p = arg;

	for (int i = 0; i < POSTS; i++)
		assert_int_equal(loop_post(p->l, post_fn, p), 0);
	return NULL;
}

static void test_post_other_thread(void **state)
{
	struct post p = { .l = loop_new(), .loop_thread = pthread_self() };
	pthread_t th;

	(void)state;
	assert_int_equal(pthread_create(&th, NULL, poster, &p), 0);
	/* Blocking waits: only the posts wake the loop. */
	while (__atomic_load_n(&p.runs, __ATOMIC_ACQUIRE) < POSTS)
		assert_true(loop_run_once(p.l, 2000) > 0);
	pthread_join(th, NULL);
	assert_int_equal(p.runs, POSTS);
	assert_int_equal(p.wrong_thread, 0);
	assert_int_equal(loop_run_once(p.l, 0), 0);
	loop_free(p.l);
}

static void test_work_coalesces(void **state)
{
	struct post p = { .l = loop_new(), .loop_thread = pthread_self() };

	(void)state;
	loop_work_init(&p.w, post_fn, &p);
	loop_work_post(p.l, &p.w);
	loop_work_post(p.l, &p.w);
	loop_work_post(p.l, &p.w);
	assert_int_equal(loop_run_once(p.l, 100), 1);
	assert_int_equal(p.runs, 1);
	/* Posted again after it ran: runs again. */
	loop_work_post(p.l, &p.w);
	assert_int_equal(loop_run_once(p.l, 100), 1);
	assert_int_equal(p.runs, 2);
	/* Cancelled before the loop got to it: does not run. */
	loop_work_post(p.l, &p.w);
	loop_work_cancel(p.l, &p.w);
	assert_false(p.w.queued);
	assert_int_equal(loop_run_once(p.l, 0), 0);
	assert_int_equal(p.runs, 2);
	loop_free(p.l);
}

struct chain {
	struct loop *l;
	struct loop_work a, b, c;
	int order[8], n;
};

static void chain_a(void *opaque)
{
	struct chain *c = opaque;

	c->order[c->n++] = 'a';
	/* Cancel one queued behind it, re-post itself: that run waits for the next round. */
	loop_work_cancel(c->l, &c->b);
	loop_work_post(c->l, &c->a);
}

static void chain_b(void *opaque)
{
	struct chain *c = opaque;

	c->order[c->n++] = 'b';
}

static void chain_c(void *opaque)
{
	struct chain *c = opaque;

	c->order[c->n++] = 'c';
}

static void test_work_cancel_in_callback(void **state)
{
	struct chain c = { .l = loop_new() };

	(void)state;
	loop_work_init(&c.a, chain_a, &c);
	loop_work_init(&c.b, chain_b, &c);
	loop_work_init(&c.c, chain_c, &c);
	loop_work_post(c.l, &c.a);
	loop_work_post(c.l, &c.b);
	loop_work_post(c.l, &c.c);
	loop_run_once(c.l, 100);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.order[0], 'a');
	assert_int_equal(c.order[1], 'c');
	/* a re-posted itself: it runs in the next round, once. */
	loop_run_once(c.l, 100);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.order[2], 'a');
	loop_work_cancel(c.l, &c.a);
	loop_free(c.l);
}

/* Work whose callback frees the memory the work lives in (vmm_call's stack request ends that way). */
struct self_freeing {
	struct loop_work w;
	unsigned *runs;
};

static void self_free_fn(void *opaque)
{
	struct self_freeing *f = opaque;

	(*f->runs)++;
	free(f);   /* the loop must not touch f->w after this (ASan: heap-use-after-free) */
}

static void test_work_freed_by_its_callback(void **state)
{
	struct loop *l = loop_new();
	unsigned runs = 0;

	(void)state;
	assert_non_null(l);
	for (unsigned i = 0; i < 3; i++) {
		struct self_freeing *f = calloc(1, sizeof(*f));

		assert_non_null(f);
		f->runs = &runs;
		loop_work_init(&f->w, self_free_fn, f);
		loop_work_post(l, &f->w);
	}
	assert_int_equal(loop_run_once(l, 1000), 3);
	assert_int_equal(runs, 3);
	loop_free(l);
}

static void test_free_with_pending_posts(void **state)
{
	struct loop *l = loop_new();
	struct post p = { .l = l, .loop_thread = pthread_self() };

	(void)state;
	/* Never run: loop_free releases them (ASan's leak check holds it to that). */
	assert_int_equal(loop_post(l, post_fn, &p), 0);
	assert_int_equal(loop_post(l, post_fn, &p), 0);
	loop_free(l);
	assert_int_equal(p.runs, 0);
}

/* ---- run and stop ---- */

struct runner {
	struct loop *l;
	struct loop_timer t;
	int ticks;
};

static void runner_tick(void *opaque)
{
	struct runner *r = opaque;

	__atomic_add_fetch(&r->ticks, 1, __ATOMIC_RELEASE);
}

static void *runner_main(void *arg)
{
	struct runner *r = arg;

	loop_run(r->l);
	return NULL;
}

static void test_timer_armed_from_other_thread(void **state)
{
	struct runner r = { .l = loop_new() };
	pthread_t th;
	uint64_t end;

	(void)state;
	loop_timer_init(&r.t, r.l, runner_tick, &r);
	assert_int_equal(pthread_create(&th, NULL, runner_main, &r), 0);
	/* The loop sleeps in epoll_wait with no timer; arming from here must still wake it in time. */
	usleep(20000);
	loop_timer_arm(&r.t, 2 * MS, 0);
	end = loop_now_ns() + 2000 * MS;
	while (!__atomic_load_n(&r.ticks, __ATOMIC_ACQUIRE) && loop_now_ns() < end)
		usleep(1000);
	assert_int_equal(r.ticks, 1);
	loop_stop(r.l);
	pthread_join(th, NULL);
	/* A stop before the run ends the next run at once. */
	loop_stop(r.l);
	loop_run(r.l);
	loop_free(r.l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_many_fds),
		cmocka_unit_test(test_delete_during_dispatch),
		cmocka_unit_test(test_delete_self),
		cmocka_unit_test(test_timer_order),
		cmocka_unit_test(test_timer_rearm_earlier),
		cmocka_unit_test(test_timer_periodic),
		cmocka_unit_test(test_timer_cancel_in_callback),
		cmocka_unit_test(test_timer_cancel_self_periodic),
		cmocka_unit_test(test_timer_rearm_in_callback),
		cmocka_unit_test(test_post_other_thread),
		cmocka_unit_test(test_work_coalesces),
		cmocka_unit_test(test_work_cancel_in_callback),
		cmocka_unit_test(test_work_freed_by_its_callback),
		cmocka_unit_test(test_free_with_pending_posts),
		cmocka_unit_test(test_timer_armed_from_other_thread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
