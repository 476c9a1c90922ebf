/* SPDX-License-Identifier: MIT */
/*
 * PCI configuration space for the test guests: configuration mechanism #1
 * (ports 0xCF8/0xCFC) or PCIe ECAM (memory mapped), bus 0 enumeration,
 * capability lists and memory BARs (sizing, and assigning addresses where
 * no firmware did).
 *
 * Everything here works at CPL3 as well as at CPL0: the ports are reachable
 * through the TSS I/O bitmap (cpu.c) and ECAM lies in the identity-mapped,
 * user-accessible, uncached device window (entry.S). Guests that call it
 * from CPL3 save the emulated-CPL0 cost of the code between the accesses.
 */
#ifndef KESTREL_GUEST_PCI_H
#define KESTREL_GUEST_PCI_H

#include "guest.h"

#define PCI_VENDOR_ID     0x00
#define PCI_DEVICE_ID     0x02
#define PCI_COMMAND       0x04
#define PCI_STATUS        0x06
#define PCI_HEADER_TYPE   0x0e
#define PCI_BAR0          0x10
#define PCI_CAP_PTR       0x34

#define PCI_CMD_IO        0x0001
#define PCI_CMD_MEM       0x0002
#define PCI_CMD_MASTER    0x0004
#define PCI_STATUS_CAPS   0x0010

#define PCI_CAP_ID_VNDR   0x09
#define PCI_CAP_ID_MSIX   0x11

#define PCI_NUM_BARS      6

/* bus/device/function packed as in an ECAM offset >> 12. */
#define PCI_BDF(b, d, f) (((unsigned)(b) << 8) | ((unsigned)(d) << 3) | (unsigned)(f))
#define PCI_BDF_BUS(x)   (((x) >> 8) & 0xff)
#define PCI_BDF_DEV(x)   (((x) >> 3) & 0x1f)
#define PCI_BDF_FN(x)    ((x) & 7)

enum pci_method { PCI_NONE, PCI_CONF1, PCI_ECAM };

/* Chooses the access method. how: "conf1", "ecam" or "auto" (conf1 if its
 * address register reads back what was written, else ECAM at ecam_base).
 * Returns the method in use; PCI_NONE for an unknown `how`. */
enum pci_method pci_init(const char *how, uint64_t ecam_base);
const char *pci_method_name(enum pci_method m);

/* Naturally aligned accesses within the 256-byte (conf1) or 4 KiB (ECAM)
 * configuration space of bdf. */
uint32_t pci_read32(unsigned bdf, unsigned off);
uint16_t pci_read16(unsigned bdf, unsigned off);
uint8_t pci_read8(unsigned bdf, unsigned off);
void pci_write32(unsigned bdf, unsigned off, uint32_t v);
void pci_write16(unsigned bdf, unsigned off, uint16_t v);

/* First function on bus 0 (after `after`, or from the start if after < 0)
 * with this vendor and device ID; -1 if none. */
int pci_find_device(uint16_t vendor, uint16_t device, int after);

/* Offset of the next capability with this ID after `from` (0: from the
 * start of the list); 0 if none. A looping or out-of-range list ends the
 * walk. */
unsigned pci_next_cap(unsigned bdf, uint8_t cap_id, unsigned from);

struct pci_bar {
	uint64_t addr;  /* 0: unassigned */
	uint64_t size;  /* 0: not implemented */
	bool io, mem64, prefetch;
};

/* Reads BAR idx's address and size (decoding is switched off while the
 * BAR is sized, then restored). For a 64-bit BAR, idx + 1 is its upper
 * half. */
void pci_bar_probe(unsigned bdf, unsigned idx, struct pci_bar *bar);

/* Places every unassigned (or unreachable: above `window_end`) memory BAR
 * of bdf inside [window_start, window_end), naturally aligned and clear of
 * every memory BAR already assigned on bus 0, then enables memory decoding
 * and bus mastering. Fills bars[0..5] with the result (the upper half of a
 * 64-bit BAR has size 0). Returns false if something did not fit. */
bool pci_assign_bars(unsigned bdf, uint64_t window_start, uint64_t window_end,
		     struct pci_bar bars[PCI_NUM_BARS]);

#endif
