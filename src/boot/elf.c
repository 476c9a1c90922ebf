/*
 * ELF64 x86-64 kernels. Segments are loaded at their physical addresses.
 * With a XEN_ELFNOTE_PHYS32_ENTRY note the kernel is booted the PVH way
 * (32-bit flat protected mode, %ebx = struct hvm_start_info); without it,
 * the entry point gets the Linux 64-bit boot protocol (long mode, %rsi =
 * zero page). The file is untrusted input: every offset, size and sum is
 * checked against the file and against guest RAM before anything is copied.
 */
#include "boot/boot.h"
#include "boot/boot_priv.h"
#include "mem/layout.h"
#include "util/log.h"

#include <elf.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#define ELF_EHDR_SIZE  64
#define ELF_PHDR_SIZE  56
#define ELF_SHDR_SIZE  64
#define ELF_MAX_PHDRS  256

#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Xen public ABI, arch-x86/hvm/start_info.h (version 1). */
#define HVM_START_MAGIC 0x336ec578u

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};
_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(offsetof(struct hvm_start_info, memmap_paddr) == 40, "hvm_start_info layout");

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry layout");

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry layout");

/* hvm_start_info, then the module list, then the memory map, in one page. */
#define PVH_MODLIST_OFF 0x40
#define PVH_MEMMAP_OFF  0x80
_Static_assert(PVH_MEMMAP_OFF + BOOT_E820_MAX * sizeof(struct hvm_memmap_table_entry) <= 0x1000,
	       "PVH data fits in its page");
_Static_assert(LAYOUT_PVH_INFO_ADDR + 0x1000 <= LAYOUT_ZERO_PAGE_ADDR, "PVH page below zero page");

struct elf_phdr {
	uint32_t type;
	uint64_t offset, vaddr, paddr, filesz, memsz, align;
};

struct elf_info {
	uint64_t entry;       /* e_entry */
	uint64_t phoff, shoff;
	unsigned phnum, shnum;
};

static void elf_phdr_get(const uint8_t *img, const struct elf_info *ei, unsigned i,
			 struct elf_phdr *ph)
{
	const uint8_t *p = img + ei->phoff + (uint64_t)i * ELF_PHDR_SIZE;

	ph->type = boot_rd32(p);
	ph->offset = boot_rd64(p + 8);
	ph->vaddr = boot_rd64(p + 16);
	ph->paddr = boot_rd64(p + 24);
	ph->filesz = boot_rd64(p + 32);
	ph->memsz = boot_rd64(p + 40);
	ph->align = boot_rd64(p + 48);
}

/* [off, off + size) lies inside a file of `len` bytes. */
static bool in_file(uint64_t off, uint64_t size, size_t len)
{
	uint64_t end;

	return !__builtin_add_overflow(off, size, &end) && end <= len;
}

static int elf_check_ehdr(const uint8_t *img, size_t len, struct elf_info *ei, char *err,
			  size_t errlen)
{
	uint16_t type, phentsize, shentsize;

	if (len < ELF_EHDR_SIZE)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: truncated ELF (%zu bytes)", len);
	if (memcmp(img, ELFMAG, SELFMAG) != 0)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: not an ELF file");
	if (img[EI_CLASS] != ELFCLASS64 || img[EI_DATA] != ELFDATA2LSB)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: not a little-endian ELF64 file");
	if (img[EI_VERSION] != EV_CURRENT || boot_rd32(img + 20) != EV_CURRENT)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: unknown ELF version");
	type = boot_rd16(img + 16);
	if (type != ET_EXEC && type != ET_DYN)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: ELF type %u is not executable", type);
	if (boot_rd16(img + 18) != EM_X86_64)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: ELF machine %u is not x86-64",
				 boot_rd16(img + 18));
	if (boot_rd16(img + 52) != ELF_EHDR_SIZE)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: bad ELF header size %u",
				 boot_rd16(img + 52));

	ei->entry = boot_rd64(img + 24);
	ei->phoff = boot_rd64(img + 32);
	ei->shoff = boot_rd64(img + 40);
	phentsize = boot_rd16(img + 54);
	ei->phnum = boot_rd16(img + 56);
	shentsize = boot_rd16(img + 58);
	ei->shnum = boot_rd16(img + 60);

	if (phentsize != ELF_PHDR_SIZE)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: bad ELF e_phentsize %u", phentsize);
	if (ei->phnum == 0 || ei->phnum > ELF_MAX_PHDRS)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: ELF has %u program headers",
				 ei->phnum);
	if (!in_file(ei->phoff, (uint64_t)ei->phnum * ELF_PHDR_SIZE, len))
		return boot_errf(err, errlen, -ENOEXEC,
				 "kernel: ELF program headers (offset 0x%llx) lie outside the file",
				 (unsigned long long)ei->phoff);
	/* Sections are only consulted for notes; a table we cannot trust is ignored. */
	if (ei->shnum && (shentsize != ELF_SHDR_SIZE ||
			  !in_file(ei->shoff, (uint64_t)ei->shnum * ELF_SHDR_SIZE, len)))
		ei->shnum = 0;
	return 0;
}

/* Check every program header against the file and each PT_LOAD against RAM. */
static int elf_check_phdrs(const struct guest_mem *gm, const uint8_t *img, size_t len,
			   const struct elf_info *ei, uint64_t *kernel_end, char *err,
			   size_t errlen)
{
	unsigned nload = 0;
	uint64_t end, max_end = 0;
	struct elf_phdr ph;

	for (unsigned i = 0; i < ei->phnum; i++) {
		elf_phdr_get(img, ei, i, &ph);
		if (!in_file(ph.offset, ph.filesz, len))
			return boot_errf(err, errlen, -ENOEXEC,
					 "kernel: ELF segment %u (offset 0x%llx, size 0x%llx) lies outside the file",
					 i, (unsigned long long)ph.offset,
					 (unsigned long long)ph.filesz);
		if (ph.type != PT_LOAD)
			continue;
		if (ph.filesz > ph.memsz)
			return boot_errf(err, errlen, -ENOEXEC,
					 "kernel: ELF segment %u has p_filesz > p_memsz", i);
		if (ph.memsz == 0)
			continue;
		if (__builtin_add_overflow(ph.paddr, ph.memsz, &end))
			return boot_errf(err, errlen, -ENOEXEC,
					 "kernel: ELF segment %u: address 0x%llx + size 0x%llx overflows",
					 i, (unsigned long long)ph.paddr,
					 (unsigned long long)ph.memsz);
		if (ph.paddr < LAYOUT_HIMEM_START)
			return boot_errf(err, errlen, -ENOEXEC,
					 "kernel: ELF segment %u at 0x%llx overlaps the boot data below 1 MiB",
					 i, (unsigned long long)ph.paddr);
		if (!gm_is_ram(gm, ph.paddr, ph.memsz))
			return boot_errf(err, errlen, -ENOMEM,
					 "kernel: ELF segment %u (0x%llx-0x%llx) is outside guest RAM",
					 i, (unsigned long long)ph.paddr,
					 (unsigned long long)end);
		if (end > max_end)
			max_end = end;
		nload++;
	}
	if (nload == 0)
		return boot_errf(err, errlen, -ENOEXEC, "kernel: ELF has no loadable segment");
	*kernel_end = max_end;
	return 0;
}

/*
 * Walk the notes in img[off, off+size) for the Xen PHYS32 entry.
 * Returns 1 and sets *entry when found, 0 when absent, -errno when broken.
 */
static int elf_find_pvh_note(const uint8_t *img, uint64_t off, uint64_t size, uint64_t align,
			     uint32_t *entry, char *err, size_t errlen)
{
	uint64_t pos = 0;

	align = align == 8 ? 8 : 4;
	while (size - pos >= 12) {
		const uint8_t *n = img + off + pos;
		uint64_t namesz = boot_rd32(n), descsz = boot_rd32(n + 4);
		uint32_t type = boot_rd32(n + 8);
		uint64_t name_pad = (namesz + align - 1) & ~(align - 1);
		uint64_t desc_pad = (descsz + align - 1) & ~(align - 1);
		uint64_t avail = size - pos - 12;
		const uint8_t *desc = n + 12 + name_pad;

		/* The last note may go without its trailing padding. */
		if (name_pad + descsz > avail)
			return boot_errf(err, errlen, -ENOEXEC,
					 "kernel: ELF note at offset 0x%llx overruns its section",
					 (unsigned long long)(off + pos));
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 && memcmp(n + 12, "Xen", 4) == 0) {
			uint64_t v;

			if (descsz == 4)
				v = boot_rd32(desc);
			else if (descsz == 8)
				v = boot_rd64(desc);
			else
				return boot_errf(err, errlen, -ENOEXEC,
						 "kernel: Xen PHYS32_ENTRY note has %llu bytes of data",
						 (unsigned long long)descsz);
			if (v > UINT32_MAX)
				return boot_errf(err, errlen, -ENOEXEC,
						 "kernel: PVH entry 0x%llx is not a 32-bit address",
						 (unsigned long long)v);
			*entry = (uint32_t)v;
			return 1;
		}
		if (name_pad + desc_pad >= avail)
			break;
		pos += 12 + name_pad + desc_pad;
	}
	return 0;
}

static int elf_pvh_entry(const uint8_t *img, size_t len, const struct elf_info *ei,
			 uint32_t *entry, char *err, size_t errlen)
{
	struct elf_phdr ph;
	int rc;

	for (unsigned i = 0; i < ei->phnum; i++) {
		elf_phdr_get(img, ei, i, &ph);
		if (ph.type != PT_NOTE)
			continue;
		rc = elf_find_pvh_note(img, ph.offset, ph.filesz, ph.align, entry, err, errlen);
		if (rc)
			return rc;
	}
	/* No note segment carries it (some linkers drop PT_NOTE): try the sections. */
	for (unsigned i = 0; i < ei->shnum; i++) {
		const uint8_t *sh = img + ei->shoff + (uint64_t)i * ELF_SHDR_SIZE;
		uint64_t off = boot_rd64(sh + 24), size = boot_rd64(sh + 32);

		if (boot_rd32(sh + 4) != SHT_NOTE)
			continue;
		if (!in_file(off, size, len))
			return boot_errf(err, errlen, -ENOEXEC,
					 "kernel: ELF note section %u lies outside the file", i);
		rc = elf_find_pvh_note(img, off, size, boot_rd64(sh + 48), entry, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Physical address of `addr`: through the PT_LOAD whose virtual range holds
 * it (vmlinux links at high virtual addresses), else as a physical address
 * inside some PT_LOAD. 0 when no loaded segment contains it.
 */
static uint64_t elf_to_phys(const uint8_t *img, const struct elf_info *ei, uint64_t addr,
			    bool try_virtual)
{
	struct elf_phdr ph;

	for (int pass = try_virtual ? 0 : 1; pass < 2; pass++) {
		for (unsigned i = 0; i < ei->phnum; i++) {
			uint64_t base;

			elf_phdr_get(img, ei, i, &ph);
			if (ph.type != PT_LOAD || ph.memsz == 0)
				continue;
			base = pass == 0 ? ph.vaddr : ph.paddr;
			if (addr >= base && addr - base < ph.memsz)
				return ph.paddr + (addr - base);
		}
	}
	return 0;
}

/*
 * Zero a segment's bss. Guest RAM starts as a fresh memfd whose holes read as
 * zero: writing zeros there would only fault in (and count as resident) pages
 * the guest may never touch, for a kernel's bss megabytes of them. So only
 * the parts that hold data (SEEK_DATA: pages written or swapped out) are
 * cleared; test memory without a memfd is cleared whole.
 */
static void elf_zero(const struct guest_mem *gm, uint8_t *dst, size_t len)
{
	off_t off, end, data, hole;

	if (gm->memfd < 0 || !gm->mapping || dst < (uint8_t *)gm->mapping ||
	    dst + len > (uint8_t *)gm->mapping + gm->mapping_size) {
		memset(dst, 0, len);
		return;
	}
	off = dst - (uint8_t *)gm->mapping;
	end = off + (off_t)len;
	while (off < end) {
		data = lseek(gm->memfd, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			return;                 /* holes to the end of the file */
		if (data < 0) {
			data = off;             /* cannot tell: clear the rest */
			hole = end;
		} else {
			hole = lseek(gm->memfd, data, SEEK_HOLE);
			if (hole < 0 || hole > end)
				hole = end;
		}
		if (data >= end)
			return;
		memset((uint8_t *)gm->mapping + data, 0, (size_t)(hole - data));
		off = hole;
	}
}

static void elf_load_segments(struct guest_mem *gm, const uint8_t *img, const struct elf_info *ei)
{
	struct elf_phdr ph;

	for (unsigned i = 0; i < ei->phnum; i++) {
		uint8_t *dst;

		elf_phdr_get(img, ei, i, &ph);
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		dst = gm_ptr(gm, ph.paddr, ph.memsz);   /* checked in elf_check_phdrs */
		memcpy(dst, img + ph.offset, ph.filesz);
		elf_zero(gm, dst + ph.filesz, ph.memsz - ph.filesz);
	}
}

static int elf_boot_pvh(struct guest_mem *gm, const struct boot_config *cfg,
			const struct boot_initrd *rd, uint64_t kernel_end, uint32_t entry,
			struct boot_entry *out, char *err, size_t errlen)
{
	uint8_t page[PVH_MEMMAP_OFF + BOOT_E820_MAX * sizeof(struct hvm_memmap_table_entry)];
	struct hvm_start_info si = { 0 };
	struct hvm_modlist_entry mod = { 0 };
	struct boot_e820 map[BOOT_E820_MAX];
	uint64_t initrd_gpa, initrd_size;
	int n, rc;

	rc = boot_write_cmdline(gm, cfg, LAYOUT_CMDLINE_MAX - 1, err, errlen);
	if (rc)
		return rc;
	rc = boot_initrd_place(gm, rd, kernel_end, gm_low_ram_end(gm), &initrd_gpa, &initrd_size,
			       err, errlen);
	if (rc)
		return rc;
	n = boot_build_e820(gm, map, BOOT_E820_MAX);
	if (n < 0)
		return boot_errf(err, errlen, n, "guest RAM must extend past 1 MiB for a PVH boot");

	memset(page, 0, sizeof(page));
	si.magic = htole32(HVM_START_MAGIC);
	si.version = htole32(1);
	si.cmdline_paddr = htole64(LAYOUT_CMDLINE_ADDR);
	si.rsdp_paddr = htole64(cfg->rsdp_gpa);
	si.memmap_paddr = htole64(LAYOUT_PVH_INFO_ADDR + PVH_MEMMAP_OFF);
	si.memmap_entries = htole32((uint32_t)n);
	if (initrd_size) {
		si.nr_modules = htole32(1);
		si.modlist_paddr = htole64(LAYOUT_PVH_INFO_ADDR + PVH_MODLIST_OFF);
		mod.paddr = htole64(initrd_gpa);
		mod.size = htole64(initrd_size);
		memcpy(page + PVH_MODLIST_OFF, &mod, sizeof(mod));
	}
	memcpy(page, &si, sizeof(si));
	for (int i = 0; i < n; i++) {
		struct hvm_memmap_table_entry e = {
			.addr = htole64(map[i].addr),
			.size = htole64(map[i].size),
			.type = htole32(map[i].type),
		};

		memcpy(page + PVH_MEMMAP_OFF + i * sizeof(e), &e, sizeof(e));
	}
	if (gm_write(gm, LAYOUT_PVH_INFO_ADDR, page, sizeof(page)) || boot_write_gdt(gm, false))
		return boot_errf(err, errlen, -EFAULT, "guest RAM does not cover the boot data below 1 MiB");

	out->mode = BOOT_MODE_PVH32;
	out->kind = BOOT_KERNEL_ELF_PVH;
	out->rip = entry;
	out->rbx = LAYOUT_PVH_INFO_ADDR;
	out->gdt_base = LAYOUT_GDT_ADDR;
	out->gdt_limit = BOOT_GDT_LIMIT;
	out->initrd_gpa = initrd_gpa;
	out->initrd_size = initrd_size;
	return 0;
}

/* A zero page for a kernel that brings no setup header of its own. */
static void elf_zero_page_header(uint8_t *zp)
{
	memset(zp, 0, ZP_SIZE);
	boot_wr16(zp + HDR_BOOT_FLAG, 0xaa55);
	zp[HDR_JUMP] = 0xeb;                     /* jmp short over a 2.15-sized header */
	zp[HDR_JUMP + 1] = 0x6a;
	memcpy(zp + HDR_MAGIC, "HdrS", 4);
	boot_wr16(zp + HDR_VERSION, 0x020f);
	boot_wr16(zp + HDR_VID_MODE, 0xffff);    /* "normal" */
	zp[HDR_LOADFLAGS] = LOADFLAG_LOADED_HIGH;
	boot_wr32(zp + HDR_CODE32_START, (uint32_t)LAYOUT_HIMEM_START);
	boot_wr32(zp + HDR_INITRD_ADDR_MAX, 0x7fffffff);
	boot_wr32(zp + HDR_KERNEL_ALIGNMENT, 0x200000);
	boot_wr16(zp + HDR_XLOADFLAGS, XLF_KERNEL_64);
	boot_wr32(zp + HDR_CMDLINE_SIZE, (uint32_t)(LAYOUT_CMDLINE_MAX - 1));
}

int boot_elf_load(struct guest_mem *gm, const uint8_t *img, size_t len,
		  const struct boot_config *cfg, const struct boot_initrd *rd,
		  struct boot_entry *out, char *err, size_t errlen)
{
	uint8_t zp[ZP_SIZE];
	struct elf_info ei;
	uint64_t kernel_end = 0, entry;
	uint32_t pvh_entry = 0;
	int pvh, rc;

	memset(out, 0, sizeof(*out));
	rc = elf_check_ehdr(img, len, &ei, err, errlen);
	if (rc)
		return rc;
	rc = elf_check_phdrs(gm, img, len, &ei, &kernel_end, err, errlen);
	if (rc)
		return rc;
	pvh = elf_pvh_entry(img, len, &ei, &pvh_entry, err, errlen);
	if (pvh < 0)
		return pvh;

	if (pvh) {
		if (!elf_to_phys(img, &ei, pvh_entry, false))
			return boot_errf(err, errlen, -ENOEXEC,
					 "kernel: PVH entry 0x%x is not inside a loaded segment",
					 pvh_entry);
		entry = pvh_entry;
	} else {
		entry = elf_to_phys(img, &ei, ei.entry, true);
		if (!entry)
			return boot_errf(err, errlen, -ENOEXEC,
					 "kernel: ELF entry 0x%llx is not inside a loaded segment",
					 (unsigned long long)ei.entry);
		if (entry >= GiB(4))
			return boot_errf(err, errlen, -ENOEXEC,
					 "kernel: entry 0x%llx is above 4 GiB, outside the boot page tables",
					 (unsigned long long)entry);
	}

	elf_load_segments(gm, img, &ei);

	if (pvh) {
		rc = elf_boot_pvh(gm, cfg, rd, kernel_end, pvh_entry, out, err, errlen);
	} else {
		elf_zero_page_header(zp);
		rc = boot_linux64_finish(gm, zp, cfg, rd, kernel_end, out, err, errlen);
		out->mode = BOOT_MODE_ELF64;
		out->kind = BOOT_KERNEL_ELF64;
		out->rip = entry;
	}
	if (rc)
		return rc;
	out->kernel_end = kernel_end;
	log_debug("boot", "ELF kernel: %s entry 0x%llx, loaded up to 0x%llx",
		  pvh ? "PVH" : "64-bit", (unsigned long long)entry,
		  (unsigned long long)kernel_end);
	return 0;
}

int boot_load_elf(struct guest_mem *gm, const uint8_t *img, size_t len,
		  const struct boot_config *cfg, struct boot_entry *out, char *err, size_t errlen)
{
	struct boot_initrd rd;
	int rc;

	if (!gm || !img || !cfg || !out)
		return boot_errf(err, errlen, -EINVAL, "boot: invalid arguments");
	rc = boot_initrd_open(gm, cfg, &rd, err, errlen);
	if (rc)
		return rc;
	rc = boot_elf_load(gm, img, len, cfg, &rd, out, err, errlen);
	boot_initrd_close(&rd);
	return rc;
}
