/*
 * ACPI tables for the guest: RSDP, XSDT, MADT, FADT (HW-reduced), a small
 * DSDT (\_S5, PCI0 host bridge with _CRS and _PRT, COM1) and MCFG for ECAM.
 */
#ifndef KESTREL_ACPI_H
#define KESTREL_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "mem/gm.h"

struct acpi_config {
	unsigned ncpus;
	/* Set when a PCI host bridge is present. */
	int pci;
};

/* Build the tables at LAYOUT_ACPI_ADDR; returns 0 and the RSDP address, or -errno. */
int acpi_build(struct guest_mem *gm, const struct acpi_config *cfg, uint64_t *rsdp_gpa);

/* Checksum helper: byte that makes the sum of buf[0..len) zero. */
uint8_t acpi_checksum(const void *buf, size_t len);

#endif
