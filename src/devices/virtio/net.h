/*
 * virtio-net (Virtio 1.2 section 5.1): one receive/transmit queue pair
 * (queue 0 receiveq1, queue 1 transmitq1), no control queue, in front of a
 * network backend (tap or user-mode). Checksum and TSO offloads are offered
 * only when the backend carries the virtio_net_hdr (tap); mergeable receive
 * buffers always.
 *
 * Threads: all queue and backend work runs on the I/O thread whose loop the
 * device was attached to (vnet_attach); kicks arriving on other threads
 * (MMIO exits) are handed to it through an eventfd. activate/reset run on
 * vCPU threads and synchronise with the I/O thread through the device lock.
 */
#ifndef KESTREL_VIRTIO_NET_H
#define KESTREL_VIRTIO_NET_H

#include "util/compiler.h"

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/net.h"
#include "virtio/virtio.h"

struct loop;
struct virtio_net;

/* Feature bits (5.1.3). */
#define VIRTIO_NET_F_CSUM        0
#define VIRTIO_NET_F_GUEST_CSUM  1
#define VIRTIO_NET_F_MTU         3
#define VIRTIO_NET_F_MAC         5
#define VIRTIO_NET_F_GUEST_TSO4  7
#define VIRTIO_NET_F_GUEST_TSO6  8
#define VIRTIO_NET_F_GUEST_ECN   9
#define VIRTIO_NET_F_GUEST_UFO   10
#define VIRTIO_NET_F_HOST_TSO4   11
#define VIRTIO_NET_F_HOST_TSO6   12
#define VIRTIO_NET_F_HOST_ECN    13
#define VIRTIO_NET_F_HOST_UFO    14
#define VIRTIO_NET_F_MRG_RXBUF   15
#define VIRTIO_NET_F_STATUS      16
#define VIRTIO_NET_F_CTRL_VQ     17

#define VIRTIO_NET_S_LINK_UP     1

/* Device configuration layout (5.1.4), little-endian; fields up to mtu. */
struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
	uint16_t mtu;
};
_Static_assert(sizeof(struct virtio_net_config) == 12, "virtio-net config is 12 bytes up to mtu");

/* The header in front of every packet (5.1.6), little-endian. */
struct virtio_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};
_Static_assert(sizeof(struct virtio_net_hdr) == NET_VNET_HDR_LEN, "virtio_net_hdr is 12 bytes");

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE     0
#define VIRTIO_NET_HDR_GSO_TCPV4    1
#define VIRTIO_NET_HDR_GSO_UDP      3
#define VIRTIO_NET_HDR_GSO_TCPV6    4
#define VIRTIO_NET_HDR_GSO_ECN      0x80

#define NET_RX_QUEUE 0
#define NET_TX_QUEUE 1
#define NET_DEFAULT_QUEUE_SIZE 256
#define NET_SNAP_VERSION 1       /* the device's part of a snapshot (virtio_dev_ops.save) */

struct vnet_config {
	enum net_backend_kind backend;
	char ifname[IFNAMSIZ];            /* tap */
	uint8_t mac[6];
	unsigned nr_hostfwd;              /* user */
	struct net_hostfwd hostfwd[NET_MAX_HOSTFWD];
	uint16_t mtu;                     /* 0: VIRTIO_NET_F_MTU not offered */
	uint16_t queue_size;              /* 0: NET_DEFAULT_QUEUE_SIZE; a power of two <= VQ_MAX_SIZE */
	/*
	 * Tests and fuzzers: an already-open backend to use instead of `backend`;
	 * vnet_new() takes it over (and frees it on failure too).
	 */
	struct net_backend *custom;
};

/* Counters beyond virtio_metrics (which gets packets, bytes and errors too). */
struct vnet_stats {
	uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
	uint64_t rx_dropped;    /* frames for the guest that could not be delivered */
	uint64_t tx_dropped;    /* guest frames not sent (oversized, bad header, backend refused) */
	uint64_t rx_errors, tx_errors;
	uint64_t backend_dropped; /* dropped inside the backend (slirp's queue full) */
};

/*
 * "--net" argument: "tap=NAME[,mac=M][,mtu=N]" or
 * "user[,hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...[,mac=M][,mtu=N]".
 * Without mac=, the MAC is 52:54:00 plus 3 bytes hashed from the backend part
 * ("tap=NAME" / "user"), so the same command line gives the same MAC.
 * 0 or -EINVAL with a one-line reason in err.
 */
KESTREL_MUST_CHECK int vnet_parse_spec(const char *spec, struct vnet_config *cfg, char *err, size_t errlen);

/* A NIC's MAC as exactly xx:xx:xx:xx:xx:xx (len 17), unicast and not all zeros. 0 or -EINVAL. */
KESTREL_MUST_CHECK int vnet_parse_mac(const char *s, size_t len, uint8_t mac[6]);
/* 52:54:00:xx:xx:xx from `seed` and `index` (for several NICs with the same seed). */
void vnet_default_mac(const char *seed, unsigned index, uint8_t mac[6]);

/* Open the backend and set up the device. 0 or -errno with err. */
KESTREL_MUST_CHECK int vnet_new(struct virtio_net **out, const struct vnet_config *cfg, const struct guest_mem *gm,
	    char *err, size_t errlen);
/* The generic device, for a transport. */
struct virtio_dev *vnet_virtio(struct virtio_net *n);
/*
 * Join the I/O thread's loop: register the backend's fds there; work the
 * vCPU threads hand over is posted to it from now on. Call once, before
 * that loop runs. 0 or -errno (-EBUSY: attached).
 */
KESTREL_MUST_CHECK int vnet_attach(struct virtio_net *n, struct loop *l);
/* Undo vnet_attach(); the loop must not be running (or call it from that loop). */
void vnet_detach(struct virtio_net *n);
/* Detaches if needed, closes the backend. NULL is a no-op. */
void vnet_free(struct virtio_net *n);

void vnet_get_stats(struct virtio_net *n, struct vnet_stats *st);

/*
 * Tests and fuzzers without a loop: do what the loop callbacks would do once
 * (send a frame that waited for the backend, continue a transmit batch cut
 * by its budget, receive from the backend while the guest has buffers).
 */
void vnet_poll(struct virtio_net *n);

#endif
