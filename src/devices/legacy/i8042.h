#ifndef KESTREL_I8042_H
#define KESTREL_I8042_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus/bus.h"
#include "devices/sysevent.h"

/*
 * The PS/2 controller, as far as a guest without a keyboard needs it: the
 * status and command ports, the command byte, self tests, and the CPU reset
 * line (command 0xFE, or output-port bit 0 cleared).
 */
struct i8042 {
	pthread_mutex_t lock;
	uint8_t status;
	uint8_t cmd_byte;
	uint8_t outbuf;
	uint8_t pending_cmd;   /* command waiting for its data byte, 0 if none */
	struct sysevent_sink sink;
	unsigned resets;
};

void i8042_init(struct i8042 *k, const struct sysevent_sink *sink);
/* Port 0x60 (data) and port 0x64 (status/command); 0x61 belongs to the PIT's speaker. */
extern const struct bus_dev_ops i8042_data_ops;
extern const struct bus_dev_ops i8042_ctl_ops;

#endif
