/*
 * Test doubles shared by the unit tests and the fuzz harnesses: an MSI host
 * (struct msi_host_ops) that records routes, irqfds and ioeventfds, and a
 * network backend (struct net_backend_ops) that records sent frames and hands
 * out queued ones. No cmocka here: a broken contract aborts with a message,
 * which fails a unit test and is a finding for a fuzzer.
 */
#ifndef KESTREL_TEST_FAKES_H
#define KESTREL_TEST_FAKES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/net.h"
#include "bus/irq.h"

/* ---- MSI host ---- */

#define FAKE_MSI_ROUTES 64   /* per-GSI records are kept by gsi % FAKE_MSI_ROUTES */
#define FAKE_MSI_IOEVENTS 16

struct fake_msi {
	unsigned next_gsi;        /* what the next route_alloc returns (then incremented) */
	unsigned max_routes;      /* route_alloc fails with -ENOSPC after this many; 0: no limit */
	bool strict;              /* abort on a route never allocated or a negative irqfd */
	int fail_ioeventfd;       /* non-zero: ioeventfd fails with -ENOSYS */
	unsigned first_gsi, nalloc;
	/* The last route set and the last irqfd (un)assigned (-1 after unassign). */
	uint64_t addr;
	uint32_t data;
	int irqfd;
	/* Per GSI. */
	uint64_t route_addr[FAKE_MSI_ROUTES];
	uint32_t route_data[FAKE_MSI_ROUTES];
	int route_irqfd[FAKE_MSI_ROUTES];
	unsigned routes_set, irqfds;
	uint64_t ioevent_addr[FAKE_MSI_IOEVENTS];   /* assigned ioeventfds, in order */
	unsigned nioevent;
};

extern const struct msi_host_ops fake_msi_ops;

/* Zero *m, hand out GSIs from first_gsi, and point *host at it. */
void fake_msi_init(struct fake_msi *m, unsigned first_gsi, struct msi_host *host);

/* ---- network backend ---- */

#define FB_MAX 512

struct fb_frame {
	uint8_t *data;
	size_t len;
};

struct fake_be {
	struct net_backend be;        /* first: the device sees only this */
	/* Behaviour, set after fb_new(). */
	bool strip_hdr;               /* the device's vnet header must be all zeros: checked and
	                                 stripped on send, a zero one put in front on recv */
	bool zero_hdr;                /* only check that the device's vnet header is all zeros */
	bool record;                  /* keep a copy of each sent frame in out[] (fb_new: true) */
	bool strict;                  /* abort on frames shorter than 14 or longer than NET_MAX_FRAME,
	                                 and on iovcnt outside 1..max_iov */
	int max_iov;                  /* strict only */
	bool oversize_ok;             /* a queued frame larger than recv's buffer: -EMSGSIZE
	                                 (dropped), else abort */
	int recv_error;               /* recv() fails with this when non-zero */
	unsigned eagain;              /* refuse this many sends with -EAGAIN */
	/* What happened. */
	struct fb_frame in[FB_MAX];   /* waiting for the device, oldest first */
	unsigned in_head, in_count;
	struct fb_frame out[FB_MAX];  /* what the device sent (vnet header stripped iff strip_hdr) */
	unsigned out_count;
	unsigned recv_calls, send_calls;
	uint64_t sent;                /* frames taken, recorded or not */
	int max_iovcnt;
	int offload_calls;
	unsigned offloads;
	uint64_t sink;                /* every sent byte is read (ASan sees bad iovecs) */
};

/* A fake backend with an eventfd as its fd; aborts when out of memory. */
struct fake_be *fb_new(bool vnet_hdr);
/* Queue `len` bytes for the device as recv() will return them (before strip_hdr's header). */
void fb_push(struct fake_be *f, const void *frame, size_t len);

#endif
