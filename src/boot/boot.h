/*
 * Kernel loading: bzImage (Linux x86 boot protocol, 64-bit entry), ELF
 * vmlinux with a PVH note, and plain ELF64. The loader writes everything the
 * entry needs into guest memory (zero page or hvm_start_info, e820/memmap,
 * command line, initrd, boot GDT and identity page tables) and returns the
 * initial register state for the boot vCPU.
 */
#ifndef KESTREL_BOOT_H
#define KESTREL_BOOT_H

#include "util/compiler.h"

#include <stddef.h>
#include <stdint.h>

#include "mem/gm.h"

enum boot_mode {
	BOOT_MODE_LINUX64,   /* long mode, paging on (identity 0..4G), rsi = zero page */
	BOOT_MODE_PVH32,     /* 32-bit protected flat, paging off, ebx = hvm_start_info */
	BOOT_MODE_ELF64,     /* long mode, paging on (identity 0..4G), rip = e_entry */
};

enum boot_kernel_kind { BOOT_KERNEL_BZIMAGE, BOOT_KERNEL_ELF_PVH, BOOT_KERNEL_ELF64 };

struct boot_entry {
	enum boot_mode mode;
	enum boot_kernel_kind kind;
	uint64_t rip;
	uint64_t rsp;
	uint64_t rsi;        /* LINUX64: boot_params */
	uint64_t rbx;        /* PVH32: hvm_start_info */
	uint64_t gdt_base;   /* GDT written by the loader */
	uint16_t gdt_limit;
	uint64_t cr3;        /* LINUX64/ELF64: PML4 */
	uint16_t protocol;   /* bzImage boot protocol version, e.g. 0x020f */
	uint64_t kernel_end; /* first byte after the loaded image */
	uint64_t initrd_gpa, initrd_size;
};

struct boot_config {
	const char *kernel_path;
	const char *initrd_path;   /* NULL: none */
	const char *cmdline;       /* NULL: empty */
	uint64_t rsdp_gpa;         /* 0: no ACPI */
	/*
	 * In-memory initrd (tests, fuzzers, callers that already hold it).
	 * When non-NULL it is used and initrd_path is ignored.
	 */
	const void *initrd_data;
	size_t initrd_size;
};

/*
 * Load the kernel (format detected from its bytes) and initrd into `gm`.
 * On error returns -errno and fills `err` (if non-NULL) with a one-line
 * human-readable reason, e.g. "kernel: boot protocol 2.06 is older than
 * 2.12". Leaves no partial state that matters: the caller throws the VM away.
 */
KESTREL_MUST_CHECK int boot_load(struct guest_mem *gm, const struct boot_config *cfg, struct boot_entry *out,
	      char *err, size_t errlen);

/* The pieces, exposed for unit tests and fuzzers (buffer in, guest memory out). */
KESTREL_MUST_CHECK int boot_load_bzimage(struct guest_mem *gm, const uint8_t *img, size_t len,
		      const struct boot_config *cfg, struct boot_entry *out, char *err, size_t errlen);
KESTREL_MUST_CHECK int boot_load_elf(struct guest_mem *gm, const uint8_t *img, size_t len,
		  const struct boot_config *cfg, struct boot_entry *out, char *err, size_t errlen);

/*
 * e820 map of `gm` (RAM below EBDA, reserved to 1 MiB, RAM above, high RAM).
 * Returns the number of entries, -EINVAL when low RAM does not reach past
 * 1 MiB, -ENOSPC when `max` is too small.
 */
struct boot_e820 {
	uint64_t addr, size;
	uint32_t type;        /* 1 RAM, 2 reserved, 3 ACPI */
};
#define BOOT_E820_MAX 8
KESTREL_MUST_CHECK int boot_build_e820(const struct guest_mem *gm, struct boot_e820 *map, unsigned max);

/* Identity page tables for 0..4 GiB (2 MiB pages) and the boot GDT. */
KESTREL_MUST_CHECK int boot_setup_pagetables(struct guest_mem *gm);
KESTREL_MUST_CHECK int boot_setup_gdt(struct guest_mem *gm);

#endif
