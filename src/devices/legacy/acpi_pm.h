#ifndef KESTREL_ACPI_PM_H
#define KESTREL_ACPI_PM_H

#include <stdint.h>

#include "bus/bus.h"
#include "devices/sysevent.h"

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

#endif
