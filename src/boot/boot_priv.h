/*
 * Internals shared by the boot loaders (bzimage.c, elf.c, boot.c). Not part
 * of the public API: everything a VMM caller needs is in boot.h.
 */
#ifndef KESTREL_BOOT_PRIV_H
#define KESTREL_BOOT_PRIV_H

#include "util/compiler.h"

#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "boot/boot.h"

/* Little-endian field access into byte images (no alignment assumed). */
static inline uint16_t boot_rd16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static inline uint32_t boot_rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static inline uint64_t boot_rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static inline void boot_wr16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, sizeof(v));
}

static inline void boot_wr32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static inline void boot_wr64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

/* Format a one-line error into err (may be NULL) and return rc (a -errno). */
int boot_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Whole MiB, rounded up, for messages. */
static inline unsigned long long boot_mib(uint64_t bytes)
{
	return (unsigned long long)((bytes >> 20) + ((bytes & 0xfffff) != 0));
}

/*
 * Where the initrd bytes come from: a caller's buffer (tests, fuzzers) or an
 * open file that is read straight into guest memory once its place is known.
 */
struct boot_initrd {
	const uint8_t *data;  /* non-NULL: in-memory initrd */
	int fd;               /* else: file, read with pread; -1 with data NULL: none */
	uint64_t size;
	const char *path;     /* for messages */
};

/*
 * Resolve cfg's initrd (initrd_data, else initrd_path) into `rd`. Refuses
 * directories, non-regular and empty files and files larger than guest RAM.
 * On success the caller owns rd->fd (boot_initrd_close).
 */
KESTREL_MUST_CHECK int boot_initrd_open(const struct guest_mem *gm, const struct boot_config *cfg,
		     struct boot_initrd *rd, char *err, size_t errlen);
void boot_initrd_close(struct boot_initrd *rd);

/*
 * Put the initrd at the highest 4 KiB-aligned address whose end is at most
 * `limit` (exclusive; clipped to the end of low RAM) and whose start is at
 * least `floor`. No initrd: *gpa = *size = 0, returns 0.
 */
KESTREL_MUST_CHECK int boot_initrd_place(struct guest_mem *gm, const struct boot_initrd *rd, uint64_t floor,
		      uint64_t limit, uint64_t *gpa, uint64_t *size, char *err, size_t errlen);

/*
 * Write cfg->cmdline (or "") NUL-terminated at LAYOUT_CMDLINE_ADDR; refuse
 * a line longer than max_len characters (the terminating NUL not counted).
 */
KESTREL_MUST_CHECK int boot_write_cmdline(struct guest_mem *gm, const struct boot_config *cfg, uint64_t max_len,
		       char *err, size_t errlen);

/* The boot GDT: null, null, code at 0x10, data at 0x18; 64-bit or flat 32-bit code. */
KESTREL_MUST_CHECK int boot_write_gdt(struct guest_mem *gm, bool long_mode);
#define BOOT_GDT_LIMIT (4 * 8 - 1)
#define BOOT_SEL_CODE 0x10
#define BOOT_SEL_DATA 0x18

/*
 * Linux 64-bit boot protocol, shared by bzImage and plain ELF64: `zp` is a
 * 4 KiB zero page whose setup header is already filled in. Writes the
 * command line (cmdline_size from the header), places the initrd between
 * `initrd_floor` and min(initrd_addr_max + 1, low RAM end), fills the e820
 * table and acpi_rsdp_addr, writes the zero page, GDT and page tables, and
 * sets the long-mode entry state (rip left to the caller).
 */
KESTREL_MUST_CHECK int boot_linux64_finish(struct guest_mem *gm, uint8_t *zp, const struct boot_config *cfg,
			const struct boot_initrd *rd, uint64_t initrd_floor,
			struct boot_entry *out, char *err, size_t errlen);

/* Internal loaders: like the public ones, with the initrd already resolved. */
KESTREL_MUST_CHECK int boot_bzimage_load(struct guest_mem *gm, const uint8_t *img, size_t len,
		      const struct boot_config *cfg, const struct boot_initrd *rd,
		      struct boot_entry *out, char *err, size_t errlen);
KESTREL_MUST_CHECK int boot_elf_load(struct guest_mem *gm, const uint8_t *img, size_t len,
		  const struct boot_config *cfg, const struct boot_initrd *rd,
		  struct boot_entry *out, char *err, size_t errlen);

/* Zero page (struct boot_params) layout, Documentation/arch/x86/zero-page.rst. */
#define ZP_SIZE               4096
#define ZP_ACPI_RSDP_ADDR     0x070
#define ZP_EXT_RAMDISK_IMAGE  0x0c0
#define ZP_EXT_RAMDISK_SIZE   0x0c4
#define ZP_EXT_CMD_LINE_PTR   0x0c8
#define ZP_E820_ENTRIES       0x1e8
#define ZP_SENTINEL           0x1ef
#define ZP_HDR                0x1f1   /* setup header starts here */
#define ZP_HDR_LIMIT          0x290   /* first byte past the room for the header */
#define ZP_E820_TABLE         0x2d0
#define ZP_E820_MAX           128
#define ZP_E820_ENTRY_SIZE    20

/* Setup header fields (offsets in the image and in the zero page alike). */
#define HDR_SETUP_SECTS       0x1f1
#define HDR_SYSSIZE           0x1f4
#define HDR_VID_MODE          0x1fa
#define HDR_BOOT_FLAG         0x1fe
#define HDR_JUMP              0x200
#define HDR_MAGIC             0x202   /* "HdrS" */
#define HDR_VERSION           0x206
#define HDR_TYPE_OF_LOADER    0x210
#define HDR_LOADFLAGS         0x211
#define HDR_CODE32_START      0x214
#define HDR_RAMDISK_IMAGE     0x218
#define HDR_RAMDISK_SIZE      0x21c
#define HDR_CMD_LINE_PTR      0x228
#define HDR_INITRD_ADDR_MAX   0x22c
#define HDR_KERNEL_ALIGNMENT  0x230
#define HDR_RELOCATABLE       0x234
#define HDR_XLOADFLAGS        0x236
#define HDR_CMDLINE_SIZE      0x238
#define HDR_PREF_ADDRESS      0x258
#define HDR_INIT_SIZE         0x260

#define LOADFLAG_LOADED_HIGH  0x01
#define XLF_KERNEL_64         0x0001
#define BOOT_LOADER_UNDEFINED 0xff

#endif
