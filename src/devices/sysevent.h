/*
 * How a device asks the machine to reset or power off, without knowing the
 * VM: the machine hands each such device one of these.
 */
#ifndef KESTREL_SYSEVENT_H
#define KESTREL_SYSEVENT_H

enum sysevent { SYSEVENT_RESET, SYSEVENT_POWEROFF, SYSEVENT_EXIT };

struct sysevent_sink {
	void (*fire)(void *opaque, enum sysevent ev, int status);
	void *opaque;
};

static inline void sysevent_fire(const struct sysevent_sink *s, enum sysevent ev, int status)
{
	if (s && s->fire)
		s->fire(s->opaque, ev, status);
}

#endif
