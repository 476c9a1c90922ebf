#ifndef KESTREL_ACPI_PM_H
#define KESTREL_ACPI_PM_H

#include "util/compiler.h"

#include <stdint.h>

#include "bus/bus.h"
#include "devices/sysevent.h"

#define ACPI_PM_SNAP_VERSION 1

struct snap_writer;
struct snap_sec;

/*
 * HW-reduced ACPI sleep control (offset 0) and status (offset 1) registers,
 * as the FADT describes them. Writing SLP_EN with SLP_TYP = \_S5 powers off.
 */
struct acpi_pm {
	struct sysevent_sink sink;
	uint8_t s5_type;
	uint8_t status;
};

void acpi_pm_init(struct acpi_pm *pm, const struct sysevent_sink *sink, uint8_t s5_type);
extern const struct bus_dev_ops acpi_pm_ops;

/*
 * Snapshot: the PM1 status register (the control register is write-only and
 * acts at once; s5_type is configuration). 0 or -EINVAL, untouched then.
 */
void acpi_pm_save(const struct acpi_pm *pm, struct snap_writer *w);
KESTREL_MUST_CHECK int acpi_pm_load(struct acpi_pm *pm, struct snap_sec *s);

#endif
