#ifndef KESTREL_I8042_H
#define KESTREL_I8042_H

#include "util/compiler.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "bus/irq.h"
#include "devices/sysevent.h"

#define I8042_QUEUE 16
#define I8042_SNAP_VERSION 1

struct snap_writer;
struct snap_sec;

/*
 * The PS/2 controller with a keyboard that answers its commands (no mouse):
 * status and command ports, the command byte, self tests, the CPU reset line
 * (command 0xFE, or output-port bit 0 cleared), and scancode input (used to
 * inject Ctrl-Alt-Del).
 */
struct i8042 {
	pthread_mutex_t lock;
	uint8_t status;
	uint8_t cmd_byte;
	uint8_t pending_cmd;   /* controller command waiting for its data byte */
	uint8_t kbd_pending;   /* keyboard command waiting for its argument */
	uint8_t queue[I8042_QUEUE];
	bool queue_kbd[I8042_QUEUE];   /* byte came from the keyboard (raises IRQ 1) */
	unsigned q_head, q_len;
	struct irq *irq;
	struct sysevent_sink sink;
	unsigned resets;
	uint64_t dropped;
};

void i8042_init(struct i8042 *k, const struct sysevent_sink *sink, struct irq *kbd_irq);
void i8042_exit(struct i8042 *k);
/* Queue keyboard scancodes as if typed; returns how many fit. */
size_t i8042_kbd_input(struct i8042 *k, const uint8_t *codes, size_t n);

/* Port 0x60 (data) and port 0x64 (status/command); 0x61 belongs to the PIT's speaker. */
extern const struct bus_dev_ops i8042_data_ops;
extern const struct bus_dev_ops i8042_ctl_ops;

/*
 * Snapshot: status, command byte, the controller and keyboard commands
 * waiting for their data byte, and the output queue (bytes, their source,
 * head, length); the counters stay. IRQ 1 is edge-triggered: load fires no
 * edge (one already delivered is in the saved irqchip state). 0 or -EINVAL,
 * the device untouched then.
 */
void i8042_save(const struct i8042 *k, struct snap_writer *w);
KESTREL_MUST_CHECK int i8042_load(struct i8042 *k, struct snap_sec *s);

#endif
