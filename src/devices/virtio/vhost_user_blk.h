/*
 * vhost-user-blk front-end (client mode): a virtio-blk device whose queue a
 * back-end process (qemu-storage-daemon, SPDK, ...) serves directly in
 * guest memory. kestrel negotiates features, answers config reads from the
 * back-end's config space, and at DRIVER_OK hands over the memory table,
 * the rings, the kick ioeventfds and the interrupt irqfds; no kestrel thread
 * is on the data path afterwards. See docs/vhost-user.md.
 */
#ifndef KESTREL_VHOST_USER_BLK_H
#define KESTREL_VHOST_USER_BLK_H

#include <stddef.h>

#include "virtio/virtio.h"

struct loop;
struct vhost_user_blk;

/*
 * Connect to the back-end at `socket_path`, negotiate protocol features and
 * read its config space. Guest RAM must be shareable (a memfd). 0, or
 * -errno with a one-line message in err.
 */
int vublk_new(struct vhost_user_blk **out, const char *socket_path, const struct guest_mem *gm, char *err,
	      size_t errlen);
/* Stops the rings (GET_VRING_BASE) if they run, closes the connection. NULL is a no-op. */
void vublk_free(struct vhost_user_blk *b);

struct virtio_dev *vublk_virtio(struct vhost_user_blk *b);
/* Interrupts for queues without an irqfd (INTx) are forwarded on this loop's thread. */
int vublk_attach(struct vhost_user_blk *b, struct loop *l);

#endif
