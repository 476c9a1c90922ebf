/*
 * Helpers shared by the fuzz harnesses (header only, so each target stays
 * one file): reading an input as a little-endian byte stream, a fake MSI
 * host that catches routes the transport never allocated, and an IRQ line
 * that only records its level.
 */
#ifndef KESTREL_FUZZ_COMMON_H
#define KESTREL_FUZZ_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bus/irq.h"
#include "snapshot/snap.h"
#include "util/crc32.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz {
	const uint8_t *p;
	size_t n;
};

/* Up to 8 bytes, little-endian; missing bytes read as 0. */
static inline uint64_t fz_take(struct fz *f, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes && f->n; i++, f->p++, f->n--)
		v |= (uint64_t)*f->p << (8 * i);
	return v;
}

/* Take len bytes as a block (fewer when the input runs out); returns how many. */
static inline size_t fz_block(struct fz *f, const uint8_t **out, size_t len)
{
	if (len > f->n)
		len = f->n;
	*out = f->p;
	f->p += len;
	f->n -= len;
	return len;
}

/*
 * Open what a writer holds as a state file, in memory: the header is what
 * snap_writer_save() puts in front (see snap.h), without the file.
 */
static inline int fz_reader_from_writer(struct snap_reader *r, struct snap_writer *w, char *err, size_t errlen)
{
	uint64_t len = w->len;

	if (w->oom)
		return -ENOMEM;
	memcpy(w->buf, SNAP_MAGIC, 8);
	for (unsigned i = 0; i < 4; i++) {
		w->buf[8 + i] = (uint8_t)(SNAP_FORMAT_VERSION >> (8 * i));
		w->buf[12 + i] = (uint8_t)(w->nsections >> (8 * i));
	}
	for (unsigned i = 0; i < 8; i++)
		w->buf[16 + i] = (uint8_t)(len >> (8 * i));
	uint32_t crc = crc32_update(0, w->buf, 24);
	for (unsigned i = 0; i < 4; i++)
		w->buf[24 + i] = (uint8_t)(crc >> (8 * i));
	return snap_reader_open_mem(r, w->buf, w->len, err, errlen);
}

/* --- a fake MSI host: routes 24..24+63, everything else is a transport bug --- */

static unsigned fz_routes __attribute__((unused));

static inline int fz_route_alloc(void *o)
{
	return fz_routes < 64 ? (int)(24 + fz_routes++) : -ENOSPC;
}

static inline int fz_route_set(void *o, unsigned gsi, uint64_t addr, uint32_t data)
{
	if (gsi < 24 || gsi >= 24 + 64)
		abort();
	return 0;
}

static inline void fz_route_free(void *o, unsigned gsi)
{
	if (gsi < 24 || gsi >= 24 + 64)
		abort();
}

static inline int fz_irqfd(void *o, int fd, unsigned gsi, bool assign)
{
	if (fd < 0)
		abort();
	return 0;
}

static inline int fz_ioeventfd(void *o, uint64_t addr, unsigned len, bool pio, int64_t match, int fd, bool assign)
{
	if (fd < 0)
		abort();
	return 0;
}

static const struct msi_host_ops fz_msi_ops __attribute__((unused)) = {
	fz_route_alloc, fz_route_set, fz_route_free, fz_irqfd, fz_ioeventfd,
};

/* --- an IRQ line that records its level --- */

static inline void fz_irq_set(struct irq *irq, bool level)
{
}

static const struct irq_ops fz_irq_ops __attribute__((unused)) = { fz_irq_set };

#endif
