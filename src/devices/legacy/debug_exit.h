#ifndef KESTREL_DEBUG_EXIT_H
#define KESTREL_DEBUG_EXIT_H

#include "bus/bus.h"
#include "devices/sysevent.h"

/*
 * Test-guest exit port (LAYOUT_PORT_DEBUG_EXIT): a byte written ends the VM
 * and becomes kestrel's exit status. Always present: the freestanding test
 * guests and benches rely on it, and a guest that can write ports can reset
 * the machine anyway, so it grants nothing new. It has no state: nothing to
 * snapshot.
 */
struct debug_exit {
	struct sysevent_sink sink;
};

extern const struct bus_dev_ops debug_exit_ops;

#endif
