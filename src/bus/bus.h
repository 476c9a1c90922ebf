/*
 * PIO and MMIO address spaces. A device registers a range with an ops
 * table and the access sizes it accepts; it never sees KVM. Ranges are kept
 * sorted and overlaps are rejected.
 */
#ifndef KESTREL_BUS_H
#define KESTREL_BUS_H

#include "util/compiler.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/log.h"

/* Values are little-endian as on the wire; size is 1, 2, 4 or 8. */
struct bus_dev_ops {
	uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
	void (*write)(void *opaque, uint64_t offset, uint64_t value, unsigned size);
};

/* Access-size masks for bus_register(). */
#define BUS_SZ_1   (1u << 1)
#define BUS_SZ_2   (1u << 2)
#define BUS_SZ_4   (1u << 4)
#define BUS_SZ_8   (1u << 8)
#define BUS_SZ_ANY (BUS_SZ_1 | BUS_SZ_2 | BUS_SZ_4 | BUS_SZ_8)

/* Per-range exit counters, readable while the VM runs. */
struct bus_counters {
	uint64_t reads;
	uint64_t writes;
};

struct bus_range {
	uint64_t base;
	uint64_t len;
	unsigned sizes;
	const struct bus_dev_ops *ops;
	void *opaque;
	const char *name;
	struct bus_counters *counters; /* owned by the bus, stable address */
};

struct bus {
	const char *name;              /* "pio" or "mmio" */
	pthread_rwlock_t lock;
	struct bus_range *ranges;      /* sorted by base */
	size_t nr, cap;
	uint64_t unmapped_reads;       /* accesses that hit nothing */
	uint64_t unmapped_writes;
	uint64_t bad_size;             /* accesses with a size the device refused */
	struct log_ratelimit rl;
};

KESTREL_MUST_CHECK int bus_init(struct bus *b, const char *name);
void bus_exit(struct bus *b);

/* 0, -EINVAL (empty, wrapping or no sizes), -EEXIST (overlap), -ENOMEM. */
KESTREL_MUST_CHECK int bus_register(struct bus *b, uint64_t base, uint64_t len, unsigned sizes,
		 const struct bus_dev_ops *ops, void *opaque, const char *name);
/* Remove the range that starts at `base`; 0 or -ENOENT. */
int bus_unregister(struct bus *b, uint64_t base);

/*
 * Dispatch one access. Reads of nothing return all-ones, writes to nothing
 * are dropped; both return -ENOENT so callers can count them.
 */
int bus_read(struct bus *b, uint64_t addr, unsigned size, uint64_t *value);
int bus_write(struct bus *b, uint64_t addr, unsigned size, uint64_t value);

/* Counters of the range that contains addr, or NULL. */
const struct bus_counters *bus_counters_at(struct bus *b, uint64_t addr);

/* Visit every range in address order (under the read lock). */
void bus_for_each(struct bus *b, void (*fn)(const struct bus_range *r, void *arg), void *arg);

#endif
