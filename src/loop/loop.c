#include "loop/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* Events fetched per epoll_wait: more simply wait for the next round. */
#define LOOP_BATCH 64

/*
 * Entries are heap objects referenced from epoll's data.ptr, so the fd table
 * can grow (realloc) under them. A deleted entry stays allocated until the
 * round that may still hold a pointer to it is over.
 */
struct loop_entry {
	int fd;
	bool dead;
	loop_cb cb;
	void *opaque;
	struct loop_entry *next_dead;
};

struct loop {
	int epfd;
	int wakefd;
	int timerfd;
	bool stop;
	bool dispatching;
	int ran;                       /* callbacks run in this round */
	struct loop_entry **byfd;      /* indexed by fd */
	size_t nbyfd;
	struct loop_entry *dead;       /* deleted during this round */

	/* Timers and posted work: touched from any thread. */
	pthread_mutex_t lock;
	struct loop_timer *timers;     /* sorted by deadline, earliest first */
	uint64_t timerfd_at;           /* what timerfd is armed for; 0: disarmed */
	struct loop_work *work_head, *work_tail;
	uint64_t work_round;           /* stamped on work as it is queued */
	bool woken;                    /* wakefd written and not yet read */
};

uint64_t loop_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void loop_wake(struct loop *l)
{
	uint64_t one = 1;

	/* EAGAIN only when the counter is already huge: the loop wakes either way. */
	if (write(l->wakefd, &one, sizeof(one)) < 0)
		return;
}

/* ---- posted work ---- */

static void loop_run_posted(struct loop *l)
{
	uint64_t round;

	pthread_mutex_lock(&l->lock);
	l->woken = false;
	/* Only what was queued before now: work re-posting itself runs next round, not for ever. */
	round = l->work_round++;
	while (l->work_head && l->work_head->round <= round) {
		struct loop_work *w = l->work_head;
		bool heap = w->heap;   /* fn may end the life of caller-owned work: no touching w after it */

		l->work_head = w->next;
		if (!l->work_head)
			l->work_tail = NULL;
		w->next = NULL;
		w->queued = false;
		pthread_mutex_unlock(&l->lock);
		w->fn(w->opaque);
		l->ran++;
		if (heap)
			free(w);
		pthread_mutex_lock(&l->lock);
	}
	pthread_mutex_unlock(&l->lock);
}

void loop_work_init(struct loop_work *w, loop_fn fn, void *opaque)
{
	memset(w, 0, sizeof(*w));
	w->fn = fn;
	w->opaque = opaque;
}

void loop_work_post(struct loop *l, struct loop_work *w)
{
	bool wake;

	pthread_mutex_lock(&l->lock);
	if (w->queued) {
		pthread_mutex_unlock(&l->lock);
		return;
	}
	w->queued = true;
	w->round = l->work_round;
	w->next = NULL;
	if (l->work_tail)
		l->work_tail->next = w;
	else
		l->work_head = w;
	l->work_tail = w;
	wake = !l->woken;
	l->woken = true;
	pthread_mutex_unlock(&l->lock);
	if (wake)
		loop_wake(l);
}

void loop_work_cancel(struct loop *l, struct loop_work *w)
{
	struct loop_work **pp, *prev = NULL;

	pthread_mutex_lock(&l->lock);
	for (pp = &l->work_head; *pp; prev = *pp, pp = &(*pp)->next) {
		if (*pp != w)
			continue;
		*pp = w->next;
		if (l->work_tail == w)
			l->work_tail = prev;
		w->next = NULL;
		w->queued = false;
		break;
	}
	pthread_mutex_unlock(&l->lock);
}

int loop_post(struct loop *l, loop_fn fn, void *opaque)
{
	struct loop_work *w = malloc(sizeof(*w));

	if (!w)
		return -ENOMEM;
	loop_work_init(w, fn, opaque);
	w->heap = true;
	loop_work_post(l, w);
	return 0;
}

/* ---- timers ---- */

/* Point the timerfd at the earliest deadline. Caller holds l->lock. */
static void loop_timerfd_sync(struct loop *l)
{
	struct itimerspec its = { 0 };
	uint64_t at = l->timers ? l->timers->deadline_ns : 0;

	if (at == l->timerfd_at)
		return;
	if (at) {
		its.it_value.tv_sec = (time_t)(at / 1000000000ull);
		its.it_value.tv_nsec = (long)(at % 1000000000ull);
	}
	/* Cannot fail with a valid fd and a normalised time; a zero value disarms. */
	if (timerfd_settime(l->timerfd, TFD_TIMER_ABSTIME, &its, NULL) == 0)
		l->timerfd_at = at;
}

static void loop_timer_unlink(struct loop *l, struct loop_timer *t)
{
	for (struct loop_timer **pp = &l->timers; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->next = NULL;
	t->armed = false;
}

static void loop_timer_link(struct loop *l, struct loop_timer *t)
{
	struct loop_timer **pp = &l->timers;

	/* After the timers with the same deadline: equal deadlines run in arming order. */
	while (*pp && (*pp)->deadline_ns <= t->deadline_ns)
		pp = &(*pp)->next;
	t->next = *pp;
	*pp = t;
	t->armed = true;
}

void loop_timer_init(struct loop_timer *t, struct loop *l, loop_fn cb, void *opaque)
{
	memset(t, 0, sizeof(*t));
	t->loop = l;
	t->cb = cb;
	t->opaque = opaque;
}

void loop_timer_arm_at(struct loop_timer *t, uint64_t at_ns, uint64_t period_ns)
{
	struct loop *l = t->loop;

	pthread_mutex_lock(&l->lock);
	if (t->armed)
		loop_timer_unlink(l, t);
	/* 0 would read as "disarmed" to the timerfd; 1 ns is as good as now. */
	t->deadline_ns = at_ns ? at_ns : 1;
	t->period_ns = period_ns;
	loop_timer_link(l, t);
	loop_timerfd_sync(l);
	pthread_mutex_unlock(&l->lock);
}

void loop_timer_arm(struct loop_timer *t, uint64_t delay_ns, uint64_t period_ns)
{
	loop_timer_arm_at(t, loop_now_ns() + delay_ns, period_ns);
}

void loop_timer_cancel(struct loop_timer *t)
{
	struct loop *l = t->loop;

	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	if (t->armed) {
		loop_timer_unlink(l, t);
		loop_timerfd_sync(l);
	}
	pthread_mutex_unlock(&l->lock);
}

bool loop_timer_armed(struct loop_timer *t)
{
	bool armed;

	if (!t->loop)
		return false;
	pthread_mutex_lock(&t->loop->lock);
	armed = t->armed;
	pthread_mutex_unlock(&t->loop->lock);
	return armed;
}

/*
 * Run what is due, one timer at a time with the lock dropped, so a callback
 * may arm or cancel any timer (its own included). A timer fires at most once
 * here: a periodic one goes back into the list beyond now.
 */
static void loop_run_timers(struct loop *l)
{
	uint64_t now = loop_now_ns();
	unsigned n = 0;

	pthread_mutex_lock(&l->lock);
	/* At most as many runs as there are timers now: one re-armed in the past waits a round. */
	for (struct loop_timer *t = l->timers; t; t = t->next)
		n++;
	while (n-- && l->timers && l->timers->deadline_ns <= now) {
		struct loop_timer *t = l->timers;
		loop_fn cb = t->cb;
		void *opaque = t->opaque;

		loop_timer_unlink(l, t);
		if (t->period_ns) {
			t->deadline_ns += t->period_ns;
			if (t->deadline_ns <= now)
				t->deadline_ns = now + t->period_ns;
			loop_timer_link(l, t);
		}
		pthread_mutex_unlock(&l->lock);
		cb(opaque);
		l->ran++;
		pthread_mutex_lock(&l->lock);
	}
	/* The timerfd fired for a deadline now gone: it is disarmed until set again. */
	l->timerfd_at = 0;
	loop_timerfd_sync(l);
	pthread_mutex_unlock(&l->lock);
}

/* ---- the loop's own fds ---- */

static void loop_wake_cb(void *opaque, uint32_t events)
{
	struct loop *l = opaque;
	uint64_t v;

	(void)events;
	if (read(l->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	loop_run_posted(l);
}

static void loop_timer_cb(void *opaque, uint32_t events)
{
	struct loop *l = opaque;
	uint64_t v;

	(void)events;
	if (read(l->timerfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	loop_run_timers(l);
}

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	pthread_mutex_init(&l->lock, NULL);
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	l->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (l->epfd < 0 || l->wakefd < 0 || l->timerfd < 0 ||
	    loop_add(l, l->wakefd, EPOLLIN, loop_wake_cb, l) < 0 ||
	    loop_add(l, l->timerfd, EPOLLIN, loop_timer_cb, l) < 0) {
		loop_free(l);
		return NULL;
	}
	return l;
}

static void loop_reap(struct loop *l)
{
	while (l->dead) {
		struct loop_entry *e = l->dead;

		l->dead = e->next_dead;
		free(e);
	}
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nbyfd; i++)
		free(l->byfd[i]);
	free(l->byfd);
	loop_reap(l);
	while (l->work_head) {
		struct loop_work *w = l->work_head;

		l->work_head = w->next;
		w->queued = false;
		if (w->heap)
			free(w);
	}
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->wakefd >= 0)
		close(l->wakefd);
	if (l->timerfd >= 0)
		close(l->timerfd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

static struct loop_entry *loop_find(struct loop *l, int fd)
{
	return fd >= 0 && (size_t)fd < l->nbyfd ? l->byfd[fd] : NULL;
}

int loop_add(struct loop *l, int fd, uint32_t events, loop_cb cb, void *opaque)
{
	struct loop_entry *e;
	struct epoll_event ev = { .events = events };

	if (fd < 0 || !cb || loop_find(l, fd))
		return -EINVAL;
	if ((size_t)fd >= l->nbyfd) {
		size_t n = l->nbyfd ? l->nbyfd : 64;
		struct loop_entry **t;

		while (n <= (size_t)fd)
			n *= 2;
		t = realloc(l->byfd, n * sizeof(*t));
		if (!t)
			return -ENOMEM;
		memset(t + l->nbyfd, 0, (n - l->nbyfd) * sizeof(*t));
		l->byfd = t;
		l->nbyfd = n;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->fd = fd;
	e->cb = cb;
	e->opaque = opaque;
	ev.data.ptr = e;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int rc = -errno;

		free(e);
		return rc;
	}
	l->byfd[fd] = e;
	return 0;
}

int loop_mod(struct loop *l, int fd, uint32_t events)
{
	struct loop_entry *e = loop_find(l, fd);
	struct epoll_event ev = { .events = events };

	if (!e)
		return -ENOENT;
	ev.data.ptr = e;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int loop_del(struct loop *l, int fd)
{
	struct loop_entry *e = loop_find(l, fd);

	if (!e)
		return -ENOENT;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	l->byfd[fd] = NULL;
	if (l->dispatching) {
		/* An event for it may already sit in this round's batch: skip it, free later. */
		e->dead = true;
		e->next_dead = l->dead;
		l->dead = e;
	} else {
		free(e);
	}
	return 0;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
	struct epoll_event evs[LOOP_BATCH];
	int n = epoll_wait(l->epfd, evs, LOOP_BATCH, timeout_ms);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	l->ran = 0;
	l->dispatching = true;
	for (int i = 0; i < n; i++) {
		struct loop_entry *e = evs[i].data.ptr;

		if (e->dead)
			continue;
		e->cb(e->opaque, evs[i].events);
		if (e->cb != loop_wake_cb && e->cb != loop_timer_cb)
			l->ran++;
	}
	l->dispatching = false;
	loop_reap(l);
	return l->ran;
}

void loop_run(struct loop *l)
{
	/*
	 * The stop request is consumed on the way out, so the loop can be run
	 * again (an I/O thread restarted after a pause); a stop that comes
	 * before the run starts still ends it at once.
	 */
	while (!__atomic_exchange_n(&l->stop, false, __ATOMIC_ACQ_REL))
		if (loop_run_once(l, -1) < 0)
			break;
}

void loop_stop(struct loop *l)
{
	__atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
	loop_wake(l);
}
