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

#endif
