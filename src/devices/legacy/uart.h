#ifndef KESTREL_UART_H
#define KESTREL_UART_H

#include "util/compiler.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/chardev.h"
#include "bus/bus.h"
#include "bus/irq.h"

#define UART_FIFO_SIZE 16
#define UART_REG_COUNT 8
#define UART_SNAP_VERSION 1

struct snap_writer;
struct snap_sec;

/* A 16550A: 16-byte FIFOs, interrupts gated by MCR.OUT2 as on a PC. */
struct uart {
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
	bool thr_irq;                 /* THR-empty interrupt pending */
	uint8_t rx[UART_FIFO_SIZE];
	unsigned rx_head, rx_count;
	struct irq *irq;
	struct chardev *out;
	/* Called (from a vCPU thread, without the lock) when the RX FIFO drains. */
	void (*rx_drained)(void *opaque);
	void *rx_opaque;
	uint64_t tx_bytes, rx_bytes, overruns;
	struct log_ratelimit rl;
};

void uart_init(struct uart *u, struct irq *irq, struct chardev *out);
void uart_exit(struct uart *u);

/* Host input: returns how many bytes fit in the FIFO (the rest waits). */
size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len);

extern const struct bus_dev_ops uart_ops;

/*
 * Snapshot: every register, the RX FIFO (contents, head, count) and the
 * pending THR-empty interrupt; the counters are host metrics and stay. Load
 * validates everything before it changes the device (0 or -EINVAL, the
 * device untouched then) and re-drives the IRQ line to the level the
 * restored registers imply.
 */
void uart_save(const struct uart *u, struct snap_writer *w);
KESTREL_MUST_CHECK int uart_load(struct uart *u, struct snap_sec *s);

#endif
