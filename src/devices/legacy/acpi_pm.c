#include "devices/legacy/acpi_pm.h"
#include "snapshot/snap.h"

#include <errno.h>
#include <string.h>

#define SLP_EN       0x20
#define SLP_TYP_SHIFT 2
#define SLP_TYP_MASK 0x07
#define WAK_STS      0x80

void acpi_pm_init(struct acpi_pm *pm, const struct sysevent_sink *sink, uint8_t s5_type)
{
	memset(pm, 0, sizeof(*pm));
	if (sink)
		pm->sink = *sink;
	pm->s5_type = s5_type;
}

static uint64_t acpi_pm_read(void *opaque, uint64_t off, unsigned size)
{
	struct acpi_pm *pm = opaque;

	return off == 1 ? pm->status : 0;
}

static void acpi_pm_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct acpi_pm *pm = opaque;

	if (off == 1) {
		pm->status &= (uint8_t)~(value & WAK_STS); /* write 1 to clear */
		return;
	}
	if ((value & SLP_EN) && ((value >> SLP_TYP_SHIFT) & SLP_TYP_MASK) == pm->s5_type)
		sysevent_fire(&pm->sink, SYSEVENT_POWEROFF, 0);
	/* Other sleep states are not offered in the DSDT; ignore them. */
}

const struct bus_dev_ops acpi_pm_ops = { .read = acpi_pm_read, .write = acpi_pm_write };

/* ---- snapshot ---- */

void acpi_pm_save(const struct acpi_pm *pm, struct snap_writer *w)
{
	snap_put_u8(w, pm->status);
}

int acpi_pm_load(struct acpi_pm *pm, struct snap_sec *s)
{
	uint8_t status;

	if (s->version != ACPI_PM_SNAP_VERSION) {
		log_err("snapshot", "acpi-pm: unknown section version %u", s->version);
		snap_sec_fail(s);
		return -EINVAL;
	}
	status = snap_get_u8(s);
	if (s->err || (status & ~WAK_STS)) {
		log_err("snapshot", "acpi-pm: %s", s->err ? "section truncated" : "status has reserved bits set");
		snap_sec_fail(s);
		return -EINVAL;
	}
	pm->status = status;
	return 0;
}
