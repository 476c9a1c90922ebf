/*
 * A small epoll event loop: fds with callbacks, timers, work posted from
 * other threads, run-once for tests. The main thread and I/O threads each
 * run one.
 *
 * Threading: loop_add/mod/del and loop_free belong to the thread that runs
 * the loop (or to any one thread while the loop is not running). Timers and
 * posted work may be armed, posted and cancelled from any thread; their
 * callbacks always run on the loop's thread. A callback may delete any fd,
 * its own included, and cancel or re-arm any timer during dispatch.
 */
#ifndef KESTREL_LOOP_H
#define KESTREL_LOOP_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stdint.h>

struct loop;

typedef void (*loop_cb)(void *opaque, uint32_t events);
typedef void (*loop_fn)(void *opaque);

KESTREL_MUST_CHECK struct loop *loop_new(void);
/* Frees posted work that never ran (without running it); timers must be cancelled by their owners. */
void loop_free(struct loop *l);

/* events: EPOLLIN/EPOLLOUT... 0 or -errno. One registration per fd, as many fds as the process has. */
KESTREL_MUST_CHECK int loop_add(struct loop *l, int fd, uint32_t events, loop_cb cb, void *opaque);
KESTREL_MUST_CHECK int loop_mod(struct loop *l, int fd, uint32_t events);
/* The callback is not called again, even for an event already fetched in this round. */
int loop_del(struct loop *l, int fd);

/*
 * Timers, embedded in their owner's state. CLOCK_MONOTONIC; due timers run
 * in deadline order, each at most once per dispatch round (a periodic timer
 * that fell behind skips the ticks it missed instead of firing in a burst).
 * Cancel one before freeing the memory it lives in. A cancel from another
 * thread does not wait for a callback that is already running.
 */
struct loop_timer {
	struct loop *loop;
	loop_fn cb;
	void *opaque;
	uint64_t deadline_ns, period_ns;
	struct loop_timer *next;   /* in the loop's list, sorted by deadline */
	bool armed;
};

uint64_t loop_now_ns(void);
void loop_timer_init(struct loop_timer *t, struct loop *l, loop_fn cb, void *opaque);
/* First run at loop_now_ns() + delay_ns, then every period_ns (0: once). Re-arming replaces. */
void loop_timer_arm(struct loop_timer *t, uint64_t delay_ns, uint64_t period_ns);
/* The same with an absolute CLOCK_MONOTONIC deadline. */
void loop_timer_arm_at(struct loop_timer *t, uint64_t at_ns, uint64_t period_ns);
void loop_timer_cancel(struct loop_timer *t);
bool loop_timer_armed(struct loop_timer *t);

/*
 * Work posted to the loop's thread, embedded in its owner's state. Posting
 * work that is still queued does nothing more (one run serves both posts),
 * so a doorbell can post on every ring without flooding the loop. The loop
 * wakes at once; fn runs on its thread, after the fd events of that round.
 */
struct loop_work {
	loop_fn fn;
	void *opaque;
	struct loop_work *next;
	uint64_t round;
	bool queued, heap;
};

void loop_work_init(struct loop_work *w, loop_fn fn, void *opaque);
void loop_work_post(struct loop *l, struct loop_work *w);
/* Unqueue; as with timers, a run already under way on the loop's thread is not waited for. */
void loop_work_cancel(struct loop *l, struct loop_work *w);
/* One-off: run fn(opaque) on the loop's thread. Any thread. 0 or -ENOMEM. */
KESTREL_MUST_CHECK int loop_post(struct loop *l, loop_fn fn, void *opaque);

/* Wait up to timeout_ms (-1 forever) and dispatch; returns callbacks run (fds, timers, posts) or -errno. */
int loop_run_once(struct loop *l, int timeout_ms);
/* Run until loop_stop() (callable from any thread); the loop can be run again afterwards. */
void loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
