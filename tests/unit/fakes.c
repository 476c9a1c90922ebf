/* Shared test doubles: see fakes.h. */
#include "fakes.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void fake_abort(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void fake_abort(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("fake: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

/* ---- MSI host ---- */

static bool fm_allocated(const struct fake_msi *m, unsigned gsi)
{
	return gsi >= m->first_gsi && gsi - m->first_gsi < m->nalloc;
}

static int fm_alloc(void *o)
{
	struct fake_msi *m = o;

	if (m->max_routes && m->nalloc >= m->max_routes)
		return -ENOSPC;
	if (!m->nalloc)
		m->first_gsi = m->next_gsi;
	m->nalloc++;
	return (int)m->next_gsi++;
}

static int fm_set(void *o, unsigned gsi, uint64_t addr, uint32_t data)
{
	struct fake_msi *m = o;

	if (m->strict && !fm_allocated(m, gsi))
		fake_abort("msi: route_set on GSI %u, which was never allocated", gsi);
	m->addr = addr;
	m->data = data;
	m->route_addr[gsi % FAKE_MSI_ROUTES] = addr;
	m->route_data[gsi % FAKE_MSI_ROUTES] = data;
	m->routes_set++;
	return 0;
}

static void fm_free(void *o, unsigned gsi)
{
	struct fake_msi *m = o;

	if (m->strict && !fm_allocated(m, gsi))
		fake_abort("msi: route_free on GSI %u, which was never allocated", gsi);
}

static int fm_irqfd(void *o, int fd, unsigned gsi, bool assign)
{
	struct fake_msi *m = o;

	if (m->strict && fd < 0)
		fake_abort("msi: irqfd with fd %d", fd);
	m->irqfd = assign ? fd : -1;
	m->route_irqfd[gsi % FAKE_MSI_ROUTES] = assign ? fd : -1;
	m->irqfds++;
	return 0;
}

static int fm_ioeventfd(void *o, uint64_t addr, unsigned len, bool pio, int64_t match, int fd, bool assign)
{
	struct fake_msi *m = o;

	if (m->fail_ioeventfd)
		return -ENOSYS;
	if (assign && m->nioevent < FAKE_MSI_IOEVENTS)
		m->ioevent_addr[m->nioevent++] = addr;
	return 0;
}

const struct msi_host_ops fake_msi_ops = {
	.route_alloc = fm_alloc, .route_set = fm_set, .route_free = fm_free,
	.irqfd = fm_irqfd, .ioeventfd = fm_ioeventfd,
};

void fake_msi_init(struct fake_msi *m, unsigned first_gsi, struct msi_host *host)
{
	memset(m, 0, sizeof(*m));
	m->next_gsi = first_gsi;
	m->irqfd = -1;
	for (unsigned i = 0; i < FAKE_MSI_ROUTES; i++)
		m->route_irqfd[i] = -1;
	*host = (struct msi_host){ &fake_msi_ops, m };
}

/* ---- network backend ---- */

static ssize_t fb_send(struct net_backend *be, const struct iovec *iov, int iovcnt)
{
	struct fake_be *f = (struct fake_be *)be;
	size_t hdr = be->vnet_hdr ? NET_VNET_HDR_LEN : 0, len = 0, pos = 0;
	uint8_t *p = NULL;

	f->send_calls++;
	if (iovcnt > f->max_iovcnt)
		f->max_iovcnt = iovcnt;
	if (f->strict && (iovcnt <= 0 || iovcnt > f->max_iov))
		fake_abort("net: send with %d iovecs", iovcnt);
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (f->strict && (len < hdr + 14 || len > hdr + NET_MAX_FRAME))
		fake_abort("net: send of a %zu-byte frame", len - (len < hdr ? len : hdr));
	if (f->record) {
		p = malloc(len ? len : 1);
		if (!p)
			fake_abort("net: out of memory");
	}
	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *b = iov[i].iov_base;

		for (size_t j = 0; j < iov[i].iov_len; j++, pos++) {
			f->sink += b[j];
			if ((f->strip_hdr || f->zero_hdr) && pos < hdr && b[j])
				fake_abort("net: byte %zu of the device's vnet header is %#x, not 0", pos, b[j]);
		}
		if (p)
			memcpy(p + pos - iov[i].iov_len, b, iov[i].iov_len);
	}
	if (f->eagain) {
		f->eagain--;
		free(p);
		return -EAGAIN;
	}
	f->sent++;
	if (p) {
		size_t skip = f->strip_hdr ? (len < hdr ? len : hdr) : 0;

		if (f->out_count == FB_MAX)
			fake_abort("net: more than %d frames sent", FB_MAX);
		memmove(p, p + skip, len - skip);
		f->out[f->out_count++] = (struct fb_frame){ p, len - skip };
	}
	return (ssize_t)len;
}

static ssize_t fb_recv(struct net_backend *be, void *buf, size_t cap)
{
	struct fake_be *f = (struct fake_be *)be;
	size_t hdr = f->strip_hdr && be->vnet_hdr ? NET_VNET_HDR_LEN : 0;
	struct fb_frame fr;
	uint64_t v;

	f->recv_calls++;
	if (f->recv_error)
		return f->recv_error;
	if (!f->in_count)
		return -EAGAIN;
	fr = f->in[f->in_head];
	f->in_head = (f->in_head + 1) % FB_MAX;
	/* The fd stays readable while frames wait, like a TAP device. */
	if (--f->in_count == 0 && read(be->fd, &v, sizeof(v)) < 0)
		fake_abort("net: eventfd read failed");
	if (fr.len + hdr > cap) {
		free(fr.data);
		if (f->oversize_ok)
			return -EMSGSIZE;
		fake_abort("net: a %zu-byte frame for a %zu-byte receive buffer", fr.len + hdr, cap);
	}
	memset(buf, 0, hdr);
	memcpy((uint8_t *)buf + hdr, fr.data, fr.len);
	free(fr.data);
	return (ssize_t)(fr.len + hdr);
}

static int fb_set_offload(struct net_backend *be, unsigned offloads)
{
	struct fake_be *f = (struct fake_be *)be;

	f->offload_calls++;
	f->offloads = offloads;
	return 0;
}

static void fb_free(struct net_backend *be)
{
	struct fake_be *f = (struct fake_be *)be;

	for (unsigned i = 0; i < f->in_count; i++)
		free(f->in[(f->in_head + i) % FB_MAX].data);
	for (unsigned i = 0; i < f->out_count; i++)
		free(f->out[i].data);
	close(be->fd);
	free(f);
}

static const struct net_backend_ops fb_ops = {
	.send = fb_send, .recv = fb_recv, .set_offload = fb_set_offload, .free = fb_free,
};

struct fake_be *fb_new(bool vnet_hdr)
{
	struct fake_be *f = calloc(1, sizeof(*f));

	if (!f)
		fake_abort("net: out of memory");
	f->be.ops = &fb_ops;
	f->be.kind = "fake";
	f->be.vnet_hdr = vnet_hdr;
	f->be.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f->be.fd < 0)
		fake_abort("net: eventfd: %s", strerror(errno));
	f->record = true;
	f->max_iov = 1024;
	return f;
}

void fb_push(struct fake_be *f, const void *frame, size_t len)
{
	uint64_t one = 1;
	uint8_t *p = malloc(len ? len : 1);

	if (!p)
		fake_abort("net: out of memory");
	if (f->in_count == FB_MAX)
		fake_abort("net: more than %d frames queued", FB_MAX);
	memcpy(p, frame, len);
	f->in[(f->in_head + f->in_count) % FB_MAX] = (struct fb_frame){ p, len };
	f->in_count++;
	if (write(f->be.fd, &one, sizeof(one)) != sizeof(one))
		fake_abort("net: eventfd write failed");
}
