#ifndef KESTREL_VIRTIO_CONSOLE_H
#define KESTREL_VIRTIO_CONSOLE_H

#include "util/compiler.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/chardev.h"
#include "loop/loop.h"
#include "virtio/virtio.h"

#define VCON_RX_BUF 4096
#define VCON_SNAP_VERSION 1     /* the device's part of a snapshot (virtio_dev_ops.save) */

/*
 * virtio-console (Virtio 1.2 section 5.3), one port (hvc0), no multiport.
 * Output goes to a chardev; input arrives through vcon_receive() from the
 * main thread and is moved into the guest's receive queue on the I/O thread.
 */
struct virtio_console {
	struct virtio_dev vdev;
	struct chardev *out;
	struct loop *loop;              /* the I/O thread's, once attached */
	struct loop_work wake;          /* input waiting: handled on the I/O thread */
	pthread_mutex_t lock;
	uint8_t rx[VCON_RX_BUF];
	size_t rx_head, rx_len;
	void (*rx_drained)(void *opaque);
	void *rx_opaque;
	uint64_t rx_bytes, tx_bytes;
};

void vcon_init(struct virtio_console *c, const struct guest_mem *gm, struct chardev *out);
/* Move input on this loop's thread from now on. 0 or -EBUSY (attached already). */
KESTREL_MUST_CHECK int vcon_attach(struct virtio_console *c, struct loop *l);
/* With the loop stopped, or on its thread. Without a loop, input waits in the buffer. */
void vcon_detach(struct virtio_console *c);
void vcon_exit(struct virtio_console *c);
/* Host input; returns how many bytes were accepted (the rest must wait for rx_drained). */
size_t vcon_receive(struct virtio_console *c, const uint8_t *buf, size_t len);

#endif
