#include "loop/iothread.h"
#include "util/log.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

int iothread_init(struct iothread *it, const char *name, int cpu)
{
	memset(it, 0, sizeof(*it));
	snprintf(it->name, sizeof(it->name), "%s", name);
	it->cpu = cpu;
	it->loop = loop_new();
	return it->loop ? 0 : -ENOMEM;
}

static void *iothread_main(void *arg)
{
	struct iothread *it = arg;

	pthread_setname_np(pthread_self(), it->name);
	if (it->cpu >= 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(it->cpu, &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
			log_warn("iothread", "%s: cannot pin to CPU %d", it->name, it->cpu);
	}
	loop_run(it->loop);
	return NULL;
}

int iothread_start(struct iothread *it)
{
	sigset_t all, old;
	int r;

	if (it->started)
		return 0;
	/* Signals belong to the main thread. */
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&it->thread, NULL, iothread_main, it);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r == 0)
		it->started = true;
	return r;
}

void iothread_stop(struct iothread *it)
{
	if (it->started) {
		loop_stop(it->loop);
		pthread_join(it->thread, NULL);
		it->started = false;
	}
}

void iothread_exit(struct iothread *it)
{
	iothread_stop(it);
	loop_free(it->loop);
	it->loop = NULL;
}
