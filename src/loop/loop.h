/*
 * A small epoll event loop: fds with callbacks, run-once for tests. The
 * main thread and I/O threads each run one.
 */
#ifndef KESTREL_LOOP_H
#define KESTREL_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;

typedef void (*loop_cb)(void *opaque, uint32_t events);

struct loop *loop_new(void);
void loop_free(struct loop *l);

/* events: EPOLLIN/EPOLLOUT... 0 or -errno. One registration per fd. */
int loop_add(struct loop *l, int fd, uint32_t events, loop_cb cb, void *opaque);
int loop_mod(struct loop *l, int fd, uint32_t events);
int loop_del(struct loop *l, int fd);

/* Wait up to timeout_ms (-1 forever) and dispatch; returns callbacks run or -errno. */
int loop_run_once(struct loop *l, int timeout_ms);
/* Run until loop_stop() (callable from any thread); the loop can be run again afterwards. */
void loop_run(struct loop *l);
void loop_stop(struct loop *l);

#endif
