/*
 * Synthetic kernel images for the boot tests and the fuzz seed generator:
 * a bzImage with a 2.12+ setup header and an ELF64 with optional PVH note.
 * Field offsets are written out from the boot protocol and the ELF spec
 * here, independently of src/boot, so a wrong offset there shows up.
 */
#ifndef KESTREL_TEST_BOOT_IMAGES_H
#define KESTREL_TEST_BOOT_IMAGES_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline void ti_w16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void ti_w32(uint8_t *p, uint32_t v)
{
	ti_w16(p, (uint16_t)v);
	ti_w16(p + 2, (uint16_t)(v >> 16));
}

static inline void ti_w64(uint8_t *p, uint64_t v)
{
	ti_w32(p, (uint32_t)v);
	ti_w32(p + 4, (uint32_t)(v >> 32));
}

static inline uint16_t ti_r16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t ti_r32(const uint8_t *p)
{
	return ti_r16(p) | (uint32_t)ti_r16(p + 2) << 16;
}

static inline uint64_t ti_r64(const uint8_t *p)
{
	return ti_r32(p) | (uint64_t)ti_r32(p + 4) << 32;
}

/* Byte j of the protected-mode part / of ELF segment s. */
static inline uint8_t ti_pattern(unsigned s, uint64_t j)
{
	return (uint8_t)(s * 31 + j * 7 + 1);
}

struct ti_bz {
	uint16_t version;         /* 0x020f */
	uint8_t setup_sects;      /* 4; 0 means 4 */
	uint8_t loadflags;        /* LOADED_HIGH */
	uint16_t xloadflags;      /* XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G */
	uint32_t pm_len;          /* protected-mode part */
	uint32_t init_size;
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;
	uint32_t kernel_alignment;
	uint8_t relocatable;
	uint64_t pref_address;
};

static inline struct ti_bz ti_bz_default(void)
{
	struct ti_bz o = {
		.version = 0x020f,
		.setup_sects = 4,
		.loadflags = 0x01,
		.xloadflags = 0x0003,
		.pm_len = 64 * 1024,
		.init_size = 8u << 20,
		.initrd_addr_max = 0x7fffffff,
		.cmdline_size = 2047,
		.kernel_alignment = 0x200000,
		.relocatable = 1,
		.pref_address = 0x1000000,
	};

	return o;
}

static inline size_t ti_bz_setup_len(const struct ti_bz *o)
{
	return (size_t)((o->setup_sects ? o->setup_sects : 4) + 1) * 512;
}

/* malloc'd image; *len set. */
static inline uint8_t *ti_bz_build(const struct ti_bz *o, size_t *len)
{
	size_t setup = ti_bz_setup_len(o);
	uint8_t *img = calloc(1, setup + o->pm_len);

	if (!img)
		return NULL;
	img[0x1f1] = o->setup_sects;
	ti_w32(img + 0x1f4, (o->pm_len + 15) / 16);      /* syssize */
	ti_w16(img + 0x1fa, 0xffff);                     /* vid_mode */
	ti_w16(img + 0x1fe, 0xaa55);                     /* boot_flag */
	img[0x200] = 0xeb;                               /* jmp short */
	img[0x201] = 0x6a;                               /* header ends at 0x26c */
	memcpy(img + 0x202, "HdrS", 4);
	ti_w16(img + 0x206, o->version);
	img[0x211] = o->loadflags;
	ti_w32(img + 0x214, 0x100000);                   /* code32_start */
	ti_w32(img + 0x22c, o->initrd_addr_max);
	ti_w32(img + 0x230, o->kernel_alignment);
	img[0x234] = o->relocatable;
	img[0x235] = 21;                                 /* min_alignment */
	ti_w16(img + 0x236, o->xloadflags);
	ti_w32(img + 0x238, o->cmdline_size);
	ti_w64(img + 0x258, o->pref_address);
	ti_w32(img + 0x260, o->init_size);
	for (size_t j = 0; j < o->pm_len; j++)
		img[setup + j] = ti_pattern(0, j);
	*len = setup + o->pm_len;
	return img;
}

struct ti_seg {
	uint64_t vaddr, paddr, filesz, memsz;
};

#define TI_ELF_MAX_SEGS 8

/*
 * ELF64 x86-64 ET_EXEC: header, program headers (the PT_LOADs, then a
 * PT_NOTE when pvh), the note, then each segment's file bytes (pattern).
 */
static inline uint8_t *ti_elf_build(uint64_t entry, const struct ti_seg *segs, unsigned n,
				    int pvh, uint32_t pvh_entry, size_t *len)
{
	unsigned phnum = n + (pvh ? 1 : 0);
	size_t phoff = 64, note_off = phoff + (size_t)phnum * 56, note_len = pvh ? 20 : 0;
	size_t data_off = (note_off + note_len + 15) & ~(size_t)15, total = data_off;
	size_t offs[TI_ELF_MAX_SEGS];
	uint8_t *img;

	if (n > TI_ELF_MAX_SEGS)
		return NULL;
	for (unsigned i = 0; i < n; i++) {
		offs[i] = total;
		total += segs[i].filesz;
	}
	img = calloc(1, total);
	if (!img)
		return NULL;
	memcpy(img, "\x7f" "ELF", 4);
	img[4] = 2;      /* ELFCLASS64 */
	img[5] = 1;      /* little-endian */
	img[6] = 1;      /* EV_CURRENT */
	ti_w16(img + 16, 2);     /* ET_EXEC */
	ti_w16(img + 18, 62);    /* EM_X86_64 */
	ti_w32(img + 20, 1);
	ti_w64(img + 24, entry);
	ti_w64(img + 32, phoff);
	ti_w16(img + 52, 64);
	ti_w16(img + 54, 56);
	ti_w16(img + 56, (uint16_t)phnum);
	ti_w16(img + 58, 64);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *ph = img + phoff + i * 56;

		ti_w32(ph, 1);           /* PT_LOAD */
		ti_w32(ph + 4, 7);       /* RWX */
		ti_w64(ph + 8, offs[i]);
		ti_w64(ph + 16, segs[i].vaddr);
		ti_w64(ph + 24, segs[i].paddr);
		ti_w64(ph + 32, segs[i].filesz);
		ti_w64(ph + 40, segs[i].memsz);
		ti_w64(ph + 48, 0x1000);
		for (uint64_t j = 0; j < segs[i].filesz; j++)
			img[offs[i] + j] = ti_pattern(i + 1, j);
	}
	if (pvh) {
		uint8_t *ph = img + phoff + n * 56;
		uint8_t *note = img + note_off;

		ti_w32(ph, 4);           /* PT_NOTE */
		ti_w64(ph + 8, note_off);
		ti_w64(ph + 32, note_len);
		ti_w64(ph + 40, note_len);
		ti_w64(ph + 48, 4);
		ti_w32(note, 4);         /* namesz */
		ti_w32(note + 4, 4);     /* descsz */
		ti_w32(note + 8, 18);    /* XEN_ELFNOTE_PHYS32_ENTRY */
		memcpy(note + 12, "Xen", 4);
		ti_w32(note + 16, pvh_entry);
	}
	*len = total;
	return img;
}

#endif
