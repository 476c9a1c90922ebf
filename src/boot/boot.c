/*
 * boot_load(): read the kernel file, resolve the initrd, pick the loader by
 * the image's magic. Also the pieces every entry path shares: the e820 map,
 * command line, initrd placement, boot GDT and identity page tables.
 */
#include "boot/boot.h"
#include "boot/boot_priv.h"
#include "mem/layout.h"
#include "util/file.h"
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int boot_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ---- e820 ---------------------------------------------------------------- */

int boot_build_e820(const struct guest_mem *gm, struct boot_e820 *map, unsigned max)
{
	struct boot_e820 tmp[BOOT_E820_MAX];
	uint64_t low_end;
	unsigned n = 0;

	if (!gm || !map)
		return -EINVAL;
	if (gm->nr_regions == 0 || gm->regions[0].gpa != 0)
		return -EINVAL;
	low_end = gm_low_ram_end(gm);
	if (low_end <= LAYOUT_HIMEM_START)
		return -EINVAL;

	tmp[n++] = (struct boot_e820){ 0, LAYOUT_EBDA_START, 1 };
	/* EBDA, VGA hole, option ROMs and BIOS: the ACPI tables live in here. */
	tmp[n++] = (struct boot_e820){ LAYOUT_EBDA_START, LAYOUT_HIMEM_START - LAYOUT_EBDA_START, 2 };
	tmp[n++] = (struct boot_e820){ LAYOUT_HIMEM_START, low_end - LAYOUT_HIMEM_START, 1 };
	for (unsigned i = 1; i < gm->nr_regions && n < BOOT_E820_MAX; i++) {
		if (gm->regions[i].size)
			tmp[n++] = (struct boot_e820){ gm->regions[i].gpa, gm->regions[i].size, 1 };
	}
	if (n > max)
		return -ENOSPC;
	memcpy(map, tmp, n * sizeof(*map));
	return (int)n;
}

/* ---- page tables and GDT ------------------------------------------------- */

#define PTE_P   0x001ull
#define PTE_RW  0x002ull
#define PTE_PS  0x080ull   /* in a PD entry: 2 MiB page */

int boot_setup_pagetables(struct guest_mem *gm)
{
	uint8_t page[4096];
	int rc;

	if (!gm)
		return -EINVAL;
	memset(page, 0, sizeof(page));
	boot_wr64(page, LAYOUT_PDPT_ADDR | PTE_P | PTE_RW);
	rc = gm_write(gm, LAYOUT_PML4_ADDR, page, sizeof(page));
	if (rc)
		return rc;

	memset(page, 0, sizeof(page));
	for (unsigned i = 0; i < 4; i++)
		boot_wr64(page + i * 8, (LAYOUT_PD_ADDR + i * 4096ull) | PTE_P | PTE_RW);
	rc = gm_write(gm, LAYOUT_PDPT_ADDR, page, sizeof(page));
	if (rc)
		return rc;

	/* Four PDs of 512 entries: 2048 x 2 MiB = 0..4 GiB, identity. */
	for (unsigned pd = 0; pd < 4; pd++) {
		for (unsigned i = 0; i < 512; i++) {
			uint64_t addr = ((uint64_t)pd * 512 + i) << 21;

			boot_wr64(page + i * 8, addr | PTE_P | PTE_RW | PTE_PS);
		}
		rc = gm_write(gm, LAYOUT_PD_ADDR + pd * 4096ull, page, sizeof(page));
		if (rc)
			return rc;
	}
	return 0;
}

/*
 * Flat descriptors, base 0, limit 0xfffff pages (G=1), present, DPL 0, S=1.
 * Code 0x9b = execute/read, accessed; flags nibble 0xa = G|L (64-bit) or
 * 0xc = G|D (32-bit). Data 0x93 = read/write, accessed; flags 0xc = G|B.
 */
#define GDT_CODE64 0x00af9b000000ffffull
#define GDT_CODE32 0x00cf9b000000ffffull
#define GDT_DATA   0x00cf93000000ffffull

int boot_write_gdt(struct guest_mem *gm, bool long_mode)
{
	uint8_t gdt[BOOT_GDT_LIMIT + 1];

	if (!gm)
		return -EINVAL;
	memset(gdt, 0, sizeof(gdt));
	boot_wr64(gdt + BOOT_SEL_CODE, long_mode ? GDT_CODE64 : GDT_CODE32);
	boot_wr64(gdt + BOOT_SEL_DATA, GDT_DATA);
	return gm_write(gm, LAYOUT_GDT_ADDR, gdt, sizeof(gdt));
}

int boot_setup_gdt(struct guest_mem *gm)
{
	return boot_write_gdt(gm, true);
}

/* ---- command line and initrd --------------------------------------------- */

int boot_write_cmdline(struct guest_mem *gm, const struct boot_config *cfg, uint64_t max_len,
		       char *err, size_t errlen)
{
	const char *s = cfg->cmdline ? cfg->cmdline : "";
	size_t n = strlen(s);

	if (max_len > LAYOUT_CMDLINE_MAX - 1)
		max_len = LAYOUT_CMDLINE_MAX - 1;
	if (n > max_len)
		return boot_errf(err, errlen, -E2BIG,
				 "command line is %zu bytes, the kernel accepts at most %llu",
				 n, (unsigned long long)max_len);
	if (gm_write(gm, LAYOUT_CMDLINE_ADDR, s, n + 1))
		return boot_errf(err, errlen, -EFAULT, "guest RAM does not cover the command line");
	return 0;
}

int boot_initrd_open(const struct guest_mem *gm, const struct boot_config *cfg,
		     struct boot_initrd *rd, char *err, size_t errlen)
{
	struct stat st;
	int fd, rc;

	memset(rd, 0, sizeof(*rd));
	rd->fd = -1;
	if (cfg->initrd_data) {
		if (cfg->initrd_size == 0)
			return boot_errf(err, errlen, -EINVAL, "initrd: empty");
		if (cfg->initrd_size > gm->ram_size)
			return boot_errf(err, errlen, -EFBIG,
					 "initrd (%llu MiB) is larger than guest RAM (%llu MiB)",
					 boot_mib(cfg->initrd_size), boot_mib(gm->ram_size));
		rd->data = cfg->initrd_data;
		rd->size = cfg->initrd_size;
		rd->path = "(memory)";
		return 0;
	}
	if (!cfg->initrd_path)
		return 0;

	fd = file_open(cfg->initrd_path, O_RDONLY, 0, FILE_REG, "initrd", &st, err, errlen);
	if (fd < 0)
		return fd;
	if (st.st_size == 0) {
		rc = boot_errf(err, errlen, -EINVAL, "initrd %s: empty file", cfg->initrd_path);
		goto err_close;
	}
	if ((uint64_t)st.st_size > gm->ram_size) {
		rc = boot_errf(err, errlen, -EFBIG,
			       "initrd %s (%llu MiB) is larger than guest RAM (%llu MiB)",
			       cfg->initrd_path, boot_mib((uint64_t)st.st_size),
			       boot_mib(gm->ram_size));
		goto err_close;
	}
	rd->fd = fd;
	rd->size = (uint64_t)st.st_size;
	rd->path = cfg->initrd_path;
	return 0;

err_close:
	close(fd);
	return rc;
}

void boot_initrd_close(struct boot_initrd *rd)
{
	if (rd->fd >= 0)
		close(rd->fd);
	rd->fd = -1;
}

static int initrd_read(const struct boot_initrd *rd, uint8_t *dst, char *err, size_t errlen)
{
	uint64_t done = 0;

	while (done < rd->size) {
		ssize_t r = pread(rd->fd, dst + done, rd->size - done, (off_t)done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;

			return boot_errf(err, errlen, -e, "initrd %s: %s", rd->path, strerror(e));
		}
		if (r == 0)
			return boot_errf(err, errlen, -EIO, "initrd %s: truncated while reading",
					 rd->path);
		done += (uint64_t)r;
	}
	return 0;
}

int boot_initrd_place(struct guest_mem *gm, const struct boot_initrd *rd, uint64_t floor,
		      uint64_t limit, uint64_t *gpa, uint64_t *size, char *err, size_t errlen)
{
	uint64_t start;
	uint8_t *dst;

	*gpa = 0;
	*size = 0;
	if (!rd || (!rd->data && rd->fd < 0))
		return 0;
	if (limit > gm_low_ram_end(gm))
		limit = gm_low_ram_end(gm);
	if (rd->size > limit || ((limit - rd->size) & ~0xfffull) < floor)
		return boot_errf(err, errlen, -ENOMEM,
				 "initrd (%llu MiB) does not fit in guest RAM "
				 "(it must lie between %llu MiB and %llu MiB)",
				 boot_mib(rd->size), boot_mib(floor),
				 (unsigned long long)(limit >> 20));
	start = (limit - rd->size) & ~0xfffull;
	dst = gm_ptr(gm, start, rd->size);
	if (!dst)
		return boot_errf(err, errlen, -EFAULT, "initrd: 0x%llx is not guest RAM",
				 (unsigned long long)start);
	if (rd->data) {
		memcpy(dst, rd->data, rd->size);
	} else {
		int rc = initrd_read(rd, dst, err, errlen);

		if (rc)
			return rc;
	}
	*gpa = start;
	*size = rd->size;
	log_debug("boot", "initrd at 0x%llx, %llu bytes", (unsigned long long)start,
		  (unsigned long long)rd->size);
	return 0;
}

/* ---- boot_load ----------------------------------------------------------- */

static int kernel_read(const struct guest_mem *gm, const char *path, uint8_t **img, size_t *len,
		       char *err, size_t errlen)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t size, done = 0;
	int fd, rc;

	fd = file_open(path, O_RDONLY, 0, FILE_REG, "kernel", &st, err, errlen);
	if (fd < 0)
		return fd;
	if (st.st_size == 0) {
		rc = boot_errf(err, errlen, -ENOEXEC, "kernel %s: empty file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > gm->ram_size) {
		rc = boot_errf(err, errlen, -EFBIG,
			       "kernel %s (%llu MiB) is larger than guest RAM (%llu MiB)", path,
			       boot_mib((uint64_t)st.st_size), boot_mib(gm->ram_size));
		goto out;
	}
	size = (size_t)st.st_size;
	/* Mapped, not malloc'd: unmapped after loading, it leaves no heap pages resident. */
	buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		buf = NULL;
		rc = boot_errf(err, errlen, -ENOMEM, "kernel %s: out of memory", path);
		goto out;
	}
	while (done < size) {
		ssize_t r = read(fd, buf + done, size - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			boot_errf(err, errlen, rc, "kernel %s: %s", path, strerror(-rc));
			goto out;
		}
		if (r == 0) {
			rc = boot_errf(err, errlen, -EIO, "kernel %s: truncated while reading", path);
			goto out;
		}
		done += (size_t)r;
	}
	*img = buf;
	*len = size;
	buf = NULL;
	rc = 0;
out:
	if (buf)
		munmap(buf, size);
	close(fd);
	return rc;
}

int boot_load(struct guest_mem *gm, const struct boot_config *cfg, struct boot_entry *out,
	      char *err, size_t errlen)
{
	struct boot_initrd rd = { .fd = -1 };
	uint8_t *img = NULL;
	size_t len = 0;
	int rc;

	if (!gm || !cfg || !out)
		return boot_errf(err, errlen, -EINVAL, "boot: invalid arguments");
	if (!cfg->kernel_path)
		return boot_errf(err, errlen, -EINVAL, "kernel: no kernel path given");

	rc = kernel_read(gm, cfg->kernel_path, &img, &len, err, errlen);
	if (rc)
		return rc;
	rc = boot_initrd_open(gm, cfg, &rd, err, errlen);
	if (rc)
		goto out;

	if (len >= 4 && memcmp(img, "\x7f" "ELF", 4) == 0) {
		rc = boot_elf_load(gm, img, len, cfg, &rd, out, err, errlen);
	} else if (len < HDR_MAGIC + 4) {
		rc = boot_errf(err, errlen, -ENOEXEC,
			       "kernel %s: truncated (%zu bytes, too short for a bzImage header)",
			       cfg->kernel_path, len);
	} else if (memcmp(img + HDR_MAGIC, "HdrS", 4) == 0) {
		rc = boot_bzimage_load(gm, img, len, cfg, &rd, out, err, errlen);
	} else {
		rc = boot_errf(err, errlen, -ENOEXEC,
			       "kernel %s: not a bzImage or ELF64 kernel (bad magic)",
			       cfg->kernel_path);
	}
	if (rc == 0)
		log_info("boot", "kernel %s: entry 0x%llx, mode %d", cfg->kernel_path,
			 (unsigned long long)out->rip, (int)out->mode);
out:
	boot_initrd_close(&rd);
	if (img)
		munmap(img, len);
	return rc;
}
