/*
 * vhost-user-net front-end (client mode): a virtio-net device whose receive
 * and transmit queues a back-end process (DPDK's vhost PMD, OVS-DPDK, ...)
 * serves directly in guest memory. Unlike blk, the config space (MAC, link
 * status) is kestrel's: a net back-end has none to offer. At DRIVER_OK the
 * memory table, the rings, the kick ioeventfds and the interrupt irqfds are
 * handed over; no kestrel thread is on the data path afterwards. When the
 * back-end goes away the link goes down (VIRTIO_NET_S_LINK_UP cleared, a
 * config-change interrupt) and the VM runs on. See docs/vhost-user.md.
 */
#ifndef KESTREL_VHOST_USER_NET_H
#define KESTREL_VHOST_USER_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/virtio.h"

struct loop;
struct vhost_user_net;

#define VUNET_PATH_MAX 108   /* sun_path */

/*
 * The backend part of --net: "vhost-user=SOCK[,mac=M]". SOCK is the
 * back-end's listening socket (non-empty, shorter than sun_path). Without
 * mac= the MAC is derived from the spec (vnet_default_mac) and *mac_set
 * stays true either way: the MAC is always decided here. 0 or -EINVAL with
 * a one-line reason.
 */
int vunet_parse_spec(const char *spec, char path[VUNET_PATH_MAX], uint8_t mac[6], char *err, size_t errlen);

/*
 * Connect to the back-end at `socket_path` and negotiate features and
 * protocol features. Guest RAM must be shareable (a memfd). 0, or -errno
 * with a one-line message in err.
 */
int vunet_new(struct vhost_user_net **out, const char *socket_path, const uint8_t mac[6],
	      const struct guest_mem *gm, char *err, size_t errlen);
/* Stops the rings (GET_VRING_BASE) if they run, closes the connection. NULL is a no-op. */
void vunet_free(struct vhost_user_net *n);

struct virtio_dev *vunet_virtio(struct vhost_user_net *n);
/*
 * Interrupts for queues without an irqfd (INTx) are forwarded on this
 * loop's thread, and the back-end's hang-up is noticed there.
 */
int vunet_attach(struct vhost_user_net *n, struct loop *l);
/* Link status as the driver reads it (VIRTIO_NET_S_LINK_UP or 0); for tests and metrics. */
uint16_t vunet_link_status(struct vhost_user_net *n);

#endif
