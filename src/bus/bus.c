#include "bus/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bus_init(struct bus *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	b->name = name;
	b->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	return -pthread_rwlock_init(&b->lock, NULL);
}

void bus_exit(struct bus *b)
{
	for (size_t i = 0; i < b->nr; i++)
		free(b->ranges[i].counters);
	free(b->ranges);
	pthread_rwlock_destroy(&b->lock);
	memset(b, 0, sizeof(*b));
}

/* Index of the first range whose base is > addr. */
static size_t bus_upper(const struct bus *b, uint64_t addr)
{
	size_t lo = 0, hi = b->nr;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (b->ranges[mid].base <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const struct bus_range *bus_find(const struct bus *b, uint64_t addr)
{
	size_t i = bus_upper(b, addr);
	const struct bus_range *r;

	if (i == 0)
		return NULL;
	r = &b->ranges[i - 1];
	return addr - r->base < r->len ? r : NULL;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, unsigned sizes,
		 const struct bus_dev_ops *ops, void *opaque, const char *name)
{
	uint64_t last;
	size_t i;
	int err = 0;

	if (len == 0 || !(sizes & BUS_SZ_ANY) || !ops || __builtin_add_overflow(base, len - 1, &last))
		return -EINVAL;
	pthread_rwlock_wrlock(&b->lock);
	i = bus_upper(b, base);
	/* Neighbour below must end before base, neighbour above start after last. */
	if (i > 0 && base - b->ranges[i - 1].base < b->ranges[i - 1].len) {
		err = -EEXIST;
		goto out;
	}
	if (i < b->nr && b->ranges[i].base <= last) {
		err = -EEXIST;
		goto out;
	}
	if (b->nr == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct bus_range *n = realloc(b->ranges, cap * sizeof(*n));

		if (!n) {
			err = -ENOMEM;
			goto out;
		}
		b->ranges = n;
		b->cap = cap;
	}
	struct bus_counters *c = calloc(1, sizeof(*c));
	if (!c) {
		err = -ENOMEM;
		goto out;
	}
	memmove(&b->ranges[i + 1], &b->ranges[i], (b->nr - i) * sizeof(*b->ranges));
	b->ranges[i] = (struct bus_range){ .base = base, .len = len, .sizes = sizes & BUS_SZ_ANY,
					   .ops = ops, .opaque = opaque, .name = name, .counters = c };
	b->nr++;
out:
	pthread_rwlock_unlock(&b->lock);
	return err;
}

int bus_unregister(struct bus *b, uint64_t base)
{
	int err = -ENOENT;

	pthread_rwlock_wrlock(&b->lock);
	for (size_t i = 0; i < b->nr; i++) {
		if (b->ranges[i].base != base)
			continue;
		free(b->ranges[i].counters);
		memmove(&b->ranges[i], &b->ranges[i + 1], (b->nr - i - 1) * sizeof(*b->ranges));
		b->nr--;
		err = 0;
		break;
	}
	pthread_rwlock_unlock(&b->lock);
	return err;
}

static bool size_ok(unsigned size)
{
	return size == 1 || size == 2 || size == 4 || size == 8;
}

/* Find the range for a whole access; NULL when it misses or straddles an end. */
static const struct bus_range *bus_lookup(struct bus *b, uint64_t addr, unsigned size)
{
	const struct bus_range *r = bus_find(b, addr);

	if (!r || !size_ok(size) || size - 1 > r->len - 1 - (addr - r->base))
		return NULL;
	return r;
}

/*
 * Resolve an access under the read lock and count it; the device callback
 * then runs without the lock, so a device may remap ranges (PCI BARs) from
 * inside its own handler. Devices outlive their ranges, so the copied
 * ops/opaque stay valid.
 */
static int bus_resolve(struct bus *b, uint64_t addr, unsigned size, bool write,
		       const struct bus_dev_ops **ops, void **opaque, uint64_t *base)
{
	const struct bus_range *r;
	int err = 0;

	pthread_rwlock_rdlock(&b->lock);
	r = bus_lookup(b, addr, size);
	if (!r) {
		__atomic_add_fetch(write ? &b->unmapped_writes : &b->unmapped_reads, 1, __ATOMIC_RELAXED);
		err = -ENOENT;
		goto out;
	}
	__atomic_add_fetch(write ? &r->counters->writes : &r->counters->reads, 1, __ATOMIC_RELAXED);
	if (!(r->sizes & (1u << size)) || !(write ? (void *)r->ops->write : (void *)r->ops->read)) {
		__atomic_add_fetch(&b->bad_size, 1, __ATOMIC_RELAXED);
		log_guest(&b->rl, "bus", "%s: %u-byte %s at %#llx refused by %s", b->name, size,
			  write ? "write" : "read", (unsigned long long)addr, r->name);
		err = -EINVAL;
		goto out;
	}
	*ops = r->ops;
	*opaque = r->opaque;
	*base = r->base;
out:
	pthread_rwlock_unlock(&b->lock);
	return err;
}

static uint64_t size_mask(unsigned size)
{
	return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

int bus_read(struct bus *b, uint64_t addr, unsigned size, uint64_t *value)
{
	const struct bus_dev_ops *ops;
	void *opaque;
	uint64_t base;
	int err;

	*value = size_mask(size);
	err = bus_resolve(b, addr, size, false, &ops, &opaque, &base);
	if (err)
		return err;
	*value = ops->read(opaque, addr - base, size) & size_mask(size);
	return 0;
}

int bus_write(struct bus *b, uint64_t addr, unsigned size, uint64_t value)
{
	const struct bus_dev_ops *ops;
	void *opaque;
	uint64_t base;
	int err;

	err = bus_resolve(b, addr, size, true, &ops, &opaque, &base);
	if (err)
		return err;
	ops->write(opaque, addr - base, value & size_mask(size), size);
	return 0;
}

const struct bus_counters *bus_counters_at(struct bus *b, uint64_t addr)
{
	const struct bus_range *r;
	const struct bus_counters *c = NULL;

	pthread_rwlock_rdlock(&b->lock);
	r = bus_find(b, addr);
	if (r)
		c = r->counters;
	pthread_rwlock_unlock(&b->lock);
	return c;
}

void bus_for_each(struct bus *b, void (*fn)(const struct bus_range *r, void *arg), void *arg)
{
	pthread_rwlock_rdlock(&b->lock);
	for (size_t i = 0; i < b->nr; i++)
		fn(&b->ranges[i], arg);
	pthread_rwlock_unlock(&b->lock);
}
