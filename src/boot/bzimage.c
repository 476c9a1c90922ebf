/*
 * bzImage loading, Linux x86 boot protocol (Documentation/arch/x86/boot.rst),
 * 64-bit entry: the protected-mode kernel goes to 1 MiB, the zero page
 * (struct boot_params) carries the setup header copied from the image plus
 * what the loader adds (command line, initrd, e820, RSDP), and the vCPU
 * starts in long mode at load address + 0x200 with %rsi = zero page.
 */
#include "boot/boot.h"
#include "boot/boot_priv.h"
#include "mem/layout.h"
#include "util/log.h"

#include <errno.h>
#include <string.h>

#define SECTOR              512
#define BZ_MIN_VERSION      0x020c   /* xloadflags and the 64-bit entry contract */
#define BZ_ENTRY64_OFFSET   0x200    /* startup_64 relative to the load address */
/* The header of a 2.12+ kernel reaches at least to the end of handover_offset. */
#define BZ_HDR_END_MIN      0x268

int boot_linux64_finish(struct guest_mem *gm, uint8_t *zp, const struct boot_config *cfg,
			const struct boot_initrd *rd, uint64_t initrd_floor,
			struct boot_entry *out, char *err, size_t errlen)
{
	struct boot_e820 map[BOOT_E820_MAX];
	uint64_t initrd_gpa, initrd_size, limit;
	int n, rc;

	rc = boot_write_cmdline(gm, cfg, boot_rd32(zp + HDR_CMDLINE_SIZE), err, errlen);
	if (rc)
		return rc;
	boot_wr32(zp + HDR_CMD_LINE_PTR, (uint32_t)LAYOUT_CMDLINE_ADDR);
	boot_wr32(zp + ZP_EXT_CMD_LINE_PTR, 0);
	zp[HDR_TYPE_OF_LOADER] = BOOT_LOADER_UNDEFINED;

	/* initrd_addr_max is the highest address the initrd may occupy. */
	limit = (uint64_t)boot_rd32(zp + HDR_INITRD_ADDR_MAX) + 1;
	rc = boot_initrd_place(gm, rd, initrd_floor, limit, &initrd_gpa, &initrd_size, err, errlen);
	if (rc)
		return rc;
	boot_wr32(zp + HDR_RAMDISK_IMAGE, (uint32_t)initrd_gpa);
	boot_wr32(zp + HDR_RAMDISK_SIZE, (uint32_t)initrd_size);
	boot_wr32(zp + ZP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_gpa >> 32));
	boot_wr32(zp + ZP_EXT_RAMDISK_SIZE, (uint32_t)(initrd_size >> 32));

	n = boot_build_e820(gm, map, BOOT_E820_MAX);
	if (n < 0)
		return boot_errf(err, errlen, n, "guest RAM must extend past 1 MiB for a Linux boot");
	zp[ZP_E820_ENTRIES] = (uint8_t)n;
	for (int i = 0; i < n; i++) {
		uint8_t *e = zp + ZP_E820_TABLE + i * ZP_E820_ENTRY_SIZE;

		boot_wr64(e, map[i].addr);
		boot_wr64(e + 8, map[i].size);
		boot_wr32(e + 16, map[i].type);
	}
	boot_wr64(zp + ZP_ACPI_RSDP_ADDR, cfg->rsdp_gpa);

	if (gm_write(gm, LAYOUT_ZERO_PAGE_ADDR, zp, ZP_SIZE) || boot_setup_gdt(gm) ||
	    boot_setup_pagetables(gm))
		return boot_errf(err, errlen, -EFAULT, "guest RAM does not cover the boot data below 1 MiB");

	out->mode = BOOT_MODE_LINUX64;
	out->rsi = LAYOUT_ZERO_PAGE_ADDR;
	out->rsp = LAYOUT_STACK_TOP;
	out->gdt_base = LAYOUT_GDT_ADDR;
	out->gdt_limit = BOOT_GDT_LIMIT;
	out->cr3 = LAYOUT_PML4_ADDR;
	out->initrd_gpa = initrd_gpa;
	out->initrd_size = initrd_size;
	return 0;
}

/*
 * Where the kernel decompresses itself: a relocatable kernel aligns its load
 * address up to kernel_alignment but never goes below LOAD_PHYSICAL_ADDR,
 * which the header publishes as pref_address; a fixed one uses
 * pref_address. It needs init_size bytes from there.
 */
static int bz_runtime_area(const uint8_t *img, uint64_t pm_len, uint64_t *start, uint64_t *end,
			   char *err, size_t errlen)
{
	uint32_t align = boot_rd32(img + HDR_KERNEL_ALIGNMENT);
	uint64_t pref = boot_rd64(img + HDR_PREF_ADDRESS);
	uint64_t need = boot_rd32(img + HDR_INIT_SIZE);
	uint64_t s;

	if (img[HDR_RELOCATABLE]) {
		if (align == 0 || (align & (align - 1)))
			return boot_errf(err, errlen, -ENOEXEC,
					 "kernel: kernel_alignment 0x%x is not a power of two", align);
		s = (LAYOUT_HIMEM_START + align - 1) & ~((uint64_t)align - 1);
		if (s < pref)
			s = pref;
	} else {
		s = pref ? pref : LAYOUT_HIMEM_START;
	}
	if (need < pm_len)
		need = pm_len;
	if (__builtin_add_overflow(s, need, end))
		return boot_errf(err, errlen, -ENOEXEC,
				 "kernel: decompression area 0x%llx + 0x%llx overflows",
				 (unsigned long long)s, (unsigned long long)need);
	*start = s;
	return 0;
}

int boot_bzimage_load(struct guest_mem *gm, const uint8_t *img, size_t len,
		      const struct boot_config *cfg, const struct boot_initrd *rd,
		      struct boot_entry *out, char *err, size_t errlen)
{
	uint8_t zp[ZP_SIZE];
	uint64_t setup_len, pm_len, load_end, ram_end, low_end;
	uint64_t area_start = 0, area_end = 0;
	unsigned setup_sects, hdr_end;
	uint16_t version;
	uint8_t *dst;
	int rc;

	memset(out, 0, sizeof(*out));
	if (len < 2 * SECTOR)
		return boot_errf(err, errlen, -ENOEXEC,
				 "kernel: truncated bzImage (%zu bytes, less than a boot and a setup sector)",
				 len);
	if (memcmp(img + HDR_MAGIC, "HdrS", 4) != 0)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: not a bzImage (no HdrS magic at 0x202)");
	version = boot_rd16(img + HDR_VERSION);
	if (version < BZ_MIN_VERSION)
		return boot_errf(err, errlen, -ENOEXEC,
				 "kernel: boot protocol %u.%02u is older than 2.12 (64-bit entry needs 2.12+)",
				 version >> 8, version & 0xff);
	if (!(boot_rd16(img + HDR_XLOADFLAGS) & XLF_KERNEL_64))
		return boot_errf(err, errlen, -ENOEXEC,
				 "kernel: no 64-bit entry point (XLF_KERNEL_64 not set in xloadflags)");
	if (!(img[HDR_LOADFLAGS] & LOADFLAG_LOADED_HIGH))
		return boot_errf(err, errlen, -ENOEXEC,
				 "kernel: not loadable at 1 MiB (LOADED_HIGH not set in loadflags)");
	/* The jump at 0x200 skips the header: its end is 0x202 + the jump's displacement. */
	hdr_end = 0x202u + img[HDR_JUMP + 1];
	if (hdr_end < BZ_HDR_END_MIN)
		return boot_errf(err, errlen, -ENOEXEC,
				 "kernel: setup header ends at 0x%x, too short for protocol %u.%02u",
				 hdr_end, version >> 8, version & 0xff);
	if (hdr_end > ZP_HDR_LIMIT)
		hdr_end = ZP_HDR_LIMIT;

	setup_sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
	setup_len = (uint64_t)(setup_sects + 1) * SECTOR;
	if (setup_len >= len)
		return boot_errf(err, errlen, -ENOEXEC,
				 "kernel: truncated bzImage (%zu bytes, the setup code alone is %llu)",
				 len, (unsigned long long)setup_len);
	pm_len = len - setup_len;
	/* syssize counts 16-byte paragraphs, rounded up. */
	if ((uint64_t)boot_rd32(img + HDR_SYSSIZE) * 16 > pm_len + 15)
		return boot_errf(err, errlen, -ENOEXEC,
				 "kernel: truncated bzImage (protected-mode part is %llu bytes, header says %llu)",
				 (unsigned long long)pm_len,
				 (unsigned long long)boot_rd32(img + HDR_SYSSIZE) * 16);

	rc = bz_runtime_area(img, pm_len, &area_start, &area_end, err, errlen);
	if (rc)
		return rc;
	load_end = LAYOUT_HIMEM_START + pm_len;
	ram_end = area_end > load_end ? area_end : load_end;
	low_end = gm_low_ram_end(gm);
	if (ram_end > low_end)
		return boot_errf(err, errlen, -ENOMEM,
				 "kernel: guest RAM too small: the kernel needs %llu MiB "
				 "(image at 1 MiB, decompression area 0x%llx-0x%llx), RAM below 4 GiB is %llu MiB",
				 boot_mib(ram_end), (unsigned long long)area_start,
				 (unsigned long long)area_end, (unsigned long long)(low_end >> 20));

	dst = gm_ptr(gm, LAYOUT_HIMEM_START, pm_len);
	if (!dst)
		return boot_errf(err, errlen, -EFAULT, "kernel: 1 MiB is not guest RAM");
	memcpy(dst, img + setup_len, pm_len);

	memset(zp, 0, sizeof(zp));
	memcpy(zp + ZP_HDR, img + ZP_HDR, hdr_end - ZP_HDR);
	boot_wr32(zp + HDR_CODE32_START, (uint32_t)LAYOUT_HIMEM_START);

	rc = boot_linux64_finish(gm, zp, cfg, rd, ram_end, out, err, errlen);
	if (rc)
		return rc;
	out->kind = BOOT_KERNEL_BZIMAGE;
	out->rip = LAYOUT_HIMEM_START + BZ_ENTRY64_OFFSET;
	out->protocol = version;
	out->kernel_end = load_end;
	log_debug("boot", "bzImage protocol %u.%02u, %llu bytes at 1 MiB, decompresses to 0x%llx-0x%llx",
		  version >> 8, version & 0xff, (unsigned long long)pm_len,
		  (unsigned long long)area_start, (unsigned long long)area_end);
	return 0;
}

int boot_load_bzimage(struct guest_mem *gm, const uint8_t *img, size_t len,
		      const struct boot_config *cfg, struct boot_entry *out, char *err, size_t errlen)
{
	struct boot_initrd rd;
	int rc;

	if (!gm || !img || !cfg || !out)
		return boot_errf(err, errlen, -EINVAL, "boot: invalid arguments");
	rc = boot_initrd_open(gm, cfg, &rd, err, errlen);
	if (rc)
		return rc;
	rc = boot_bzimage_load(gm, img, len, cfg, &rd, out, err, errlen);
	boot_initrd_close(&rd);
	return rc;
}
