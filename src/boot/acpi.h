/*
 * ACPI tables for the guest: RSDP, XSDT, MADT, FADT (HW-reduced), a small
 * DSDT (\_S5, PCI0 host bridge with _CRS and _PRT, COM1) and MCFG for ECAM.
 */
#ifndef KESTREL_ACPI_H
#define KESTREL_ACPI_H

#include "util/compiler.h"

#include <stddef.h>
#include <stdint.h>

#include "mem/gm.h"

/* The FADT reset register: a byte written to the PCI host's reset control port. */
#define ACPI_RESET_PORT  0xcf9
#define ACPI_RESET_VALUE 0x06    /* SYS_RST | RST_CPU */

/*
 * Real-mode reset vector F000:FFF0, the last 16 bytes below 1 MiB. With no
 * BIOS behind it, acpi_build puts a stub there that writes ACPI_RESET_VALUE
 * to ACPI_RESET_PORT: Linux on a HW-reduced ACPI platform without EFI ends
 * its default reboot by jumping here (reboot type EFI, then BIOS).
 */
#define ACPI_RESET_VECTOR 0xffff0ull

struct acpi_config {
	unsigned ncpus;
	/* Set when a PCI host bridge is present. */
	int pci;
};

/*
 * Build the tables at LAYOUT_ACPI_ADDR (and, with a PCI host, the reset
 * stub at ACPI_RESET_VECTOR); returns 0 and the RSDP address, or -errno.
 */
KESTREL_MUST_CHECK int acpi_build(struct guest_mem *gm, const struct acpi_config *cfg, uint64_t *rsdp_gpa);

/* Checksum helper: byte that makes the sum of buf[0..len) zero. */
uint8_t acpi_checksum(const void *buf, size_t len);

#endif
