#include "loop/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LOOP_MAX_FDS 64

struct loop_entry {
	int fd;            /* -1: free */
	loop_cb cb;
	void *opaque;
};

struct loop {
	int epfd;
	int wakefd;
	bool stop;
	struct loop_entry entries[LOOP_MAX_FDS];
};

static void loop_wake_cb(void *opaque, uint32_t events)
{
	struct loop *l = opaque;
	uint64_t v;

	if (read(l->wakefd, &v, sizeof(v)) < 0)
		return;
}

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	for (int i = 0; i < LOOP_MAX_FDS; i++)
		l->entries[i].fd = -1;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || l->wakefd < 0 || loop_add(l, l->wakefd, EPOLLIN, loop_wake_cb, l) < 0) {
		loop_free(l);
		return NULL;
	}
	return l;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->wakefd >= 0)
		close(l->wakefd);
	free(l);
}

static struct loop_entry *loop_find(struct loop *l, int fd)
{
	for (int i = 0; i < LOOP_MAX_FDS; i++)
		if (l->entries[i].fd == fd)
			return &l->entries[i];
	return NULL;
}

int loop_add(struct loop *l, int fd, uint32_t events, loop_cb cb, void *opaque)
{
	struct loop_entry *e;
	struct epoll_event ev = { .events = events };

	if (fd < 0 || !cb || loop_find(l, fd))
		return -EINVAL;
	e = loop_find(l, -1);
	if (!e)
		return -ENOSPC;
	ev.data.ptr = e;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	e->fd = fd;
	e->cb = cb;
	e->opaque = opaque;
	return 0;
}

int loop_mod(struct loop *l, int fd, uint32_t events)
{
	struct loop_entry *e = loop_find(l, fd);
	struct epoll_event ev = { .events = events };

	if (fd < 0 || !e)
		return -ENOENT;
	ev.data.ptr = e;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int loop_del(struct loop *l, int fd)
{
	struct loop_entry *e = loop_find(l, fd);

	if (fd < 0 || !e)
		return -ENOENT;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	/* A callback already fetched in this round sees fd -1 and is skipped. */
	e->fd = -1;
	return 0;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
	struct epoll_event evs[16];
	int n = epoll_wait(l->epfd, evs, 16, timeout_ms);
	int ran = 0;

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		struct loop_entry *e = evs[i].data.ptr;

		if (e->fd < 0)
			continue;
		e->cb(e->opaque, evs[i].events);
		ran++;
	}
	return ran;
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
	uint64_t one = 1;

	__atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
	if (write(l->wakefd, &one, sizeof(one)) < 0)
		return;
}
