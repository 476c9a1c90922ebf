#include "devices/legacy/debug_exit.h"

static uint64_t debug_exit_read(void *opaque, uint64_t off, unsigned size)
{
	return 0;
}

static void debug_exit_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct debug_exit *d = opaque;

	sysevent_fire(&d->sink, SYSEVENT_EXIT, (int)(value & 0xff));
}

const struct bus_dev_ops debug_exit_ops = { .read = debug_exit_read, .write = debug_exit_write };
