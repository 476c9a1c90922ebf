/*
 * Interrupt objects handed to devices. A device raises and lowers its line
 * (or fires an edge) without knowing whether it is an IOAPIC pin, MSI or an
 * irqfd behind it.
 */
#ifndef KESTREL_IRQ_H
#define KESTREL_IRQ_H

#include <stdbool.h>
#include <stdint.h>

struct irq;

struct irq_ops {
	void (*set_level)(struct irq *irq, bool level);
};

struct irq {
	const struct irq_ops *ops;
	void *opaque;
	unsigned gsi;
	uint64_t raised;   /* number of 0 -> 1 transitions, for metrics */
	bool level;
};

static inline void irq_set_level(struct irq *irq, bool level)
{
	if (!irq || !irq->ops)
		return;
	if (level && !irq->level)
		__atomic_add_fetch(&irq->raised, 1, __ATOMIC_RELAXED);
	irq->level = level;
	irq->ops->set_level(irq, level);
}

/* Edge: a 0 -> 1 -> 0 pulse. */
static inline void irq_pulse(struct irq *irq)
{
	irq_set_level(irq, true);
	irq_set_level(irq, false);
}



/*
 * Message-signalled interrupts and notification eventfds, as the machine
 * provides them to transports (KVM GSI routes, irqfd and ioeventfd behind
 * it; a fake in unit tests).
 */
struct msi_host_ops {
	int (*route_alloc)(void *opaque);                                   /* -> gsi or -errno */
	int (*route_set)(void *opaque, unsigned gsi, uint64_t addr, uint32_t data);
	void (*route_free)(void *opaque, unsigned gsi);
	int (*irqfd)(void *opaque, int fd, unsigned gsi, bool assign);
	/* match >= 0: only writes of that value (then len must be 1, 2, 4 or 8) */
	int (*ioeventfd)(void *opaque, uint64_t addr, unsigned len, bool pio, int64_t match, int fd,
			 bool assign);
};

struct msi_host {
	const struct msi_host_ops *ops;
	void *opaque;
};
#endif
