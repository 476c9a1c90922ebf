/* An I/O thread: one event loop on its own thread, where device work runs. */
#ifndef KESTREL_IOTHREAD_H
#define KESTREL_IOTHREAD_H

#include "util/compiler.h"

#include <pthread.h>
#include <stdbool.h>

#include "loop/loop.h"

struct iothread {
	pthread_t thread;
	struct loop *loop;
	char name[16];
	int cpu;            /* pin to this host CPU, or -1 */
	bool started;
};

/* Create the loop (register fds on it before or after start). 0 or -errno. */
KESTREL_MUST_CHECK int iothread_init(struct iothread *it, const char *name, int cpu);
/* Start the thread (again, after iothread_stop); a no-op while it runs. 0 or -errno. */
KESTREL_MUST_CHECK int iothread_start(struct iothread *it);
/*
 * Stop the loop and join the thread; the loop stays, with its fds, for a
 * later iothread_start() or for devices to unregister from.
 */
void iothread_stop(struct iothread *it);
/* Stop (if still running) and free the loop. */
void iothread_exit(struct iothread *it);

#endif
