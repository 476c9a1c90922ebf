/*
 * Kernel loader tests on fake guest memory: synthetic bzImages and ELF
 * kernels, the zero page and hvm_start_info they produce, malformed
 * inputs, boot_load() file handling and the e820 builder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "boot/boot.h"
#include "mem/gm.h"
#include "mem/layout.h"
#include "mem/gm_test.h"

#include "boot_images.h"

#define RAM_SIZE MiB(64)

struct fx {
	uint8_t *ram;
	uint64_t size;
	struct guest_mem gm;
	struct boot_config cfg;
	struct boot_entry out;
	char err[512];
	char dir[64];
};

static int fx_setup_size(void **state, uint64_t size)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->ram = calloc(1, size);
	if (!f->ram)
		return -1;
	f->size = size;
	gm_init_fake(&f->gm, 0, f->ram, size);
	strcpy(f->dir, "/tmp/kestrel-boot-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	*state = f;
	return 0;
}

static int fx_setup(void **state)
{
	return fx_setup_size(state, RAM_SIZE);
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", f->dir);
	free(f->ram);
	free(f);
	return 0;
}

static const uint8_t *gpa(struct fx *f, uint64_t a)
{
	assert_true(a < f->size);
	return f->ram + a;
}

static const uint8_t *zp(struct fx *f)
{
	return gpa(f, LAYOUT_ZERO_PAGE_ADDR);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void path_in(struct fx *f, char *buf, size_t n, const char *name)
{
	snprintf(buf, n, "%s/%s", f->dir, name);
}

static int load_bz(struct fx *f, const struct ti_bz *o)
{
	size_t len = 0;
	uint8_t *img = ti_bz_build(o, &len);
	int rc;

	assert_non_null(img);
	f->err[0] = '\0';
	rc = boot_load_bzimage(&f->gm, img, len, &f->cfg, &f->out, f->err, sizeof(f->err));
	free(img);
	return rc;
}

/* The three e820 entries a 64 MiB guest gets. */
static void check_e820_64m(const uint8_t *tbl, unsigned n, unsigned stride)
{
	assert_int_equal(n, 3);
	assert_int_equal(ti_r64(tbl), 0);
	assert_int_equal(ti_r64(tbl + 8), LAYOUT_EBDA_START);
	assert_int_equal(ti_r32(tbl + 16), 1);
	tbl += stride;
	assert_int_equal(ti_r64(tbl), LAYOUT_EBDA_START);
	assert_int_equal(ti_r64(tbl + 8), MiB(1) - LAYOUT_EBDA_START);
	assert_int_equal(ti_r32(tbl + 16), 2);
	tbl += stride;
	assert_int_equal(ti_r64(tbl), MiB(1));
	assert_int_equal(ti_r64(tbl + 8), RAM_SIZE - MiB(1));
	assert_int_equal(ti_r32(tbl + 16), 1);
}

static void check_pagetables(struct fx *f)
{
	assert_int_equal(ti_r64(gpa(f, LAYOUT_PML4_ADDR)), LAYOUT_PDPT_ADDR | 3);
	assert_int_equal(ti_r64(gpa(f, LAYOUT_PML4_ADDR + 8)), 0);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(ti_r64(gpa(f, LAYOUT_PDPT_ADDR + i * 8)),
				 (LAYOUT_PD_ADDR + i * 0x1000) | 3);
	assert_int_equal(ti_r64(gpa(f, LAYOUT_PDPT_ADDR + 32)), 0);
	/* PD entries: identity, 2 MiB, present|rw|ps. First, one in the middle, last. */
	assert_int_equal(ti_r64(gpa(f, LAYOUT_PD_ADDR)), 0x83);
	assert_int_equal(ti_r64(gpa(f, LAYOUT_PD_ADDR + 1 * 8)), 0x200083);
	assert_int_equal(ti_r64(gpa(f, LAYOUT_PD_ADDR + 1536 * 8)), 0xc0000083ull);
	assert_int_equal(ti_r64(gpa(f, LAYOUT_PD_ADDR + 2047 * 8)), 0xffe00083ull);
}

static void check_gdt(struct fx *f, uint64_t code)
{
	assert_int_equal(f->out.gdt_base, LAYOUT_GDT_ADDR);
	assert_int_equal(f->out.gdt_limit, 31);
	assert_int_equal(ti_r64(gpa(f, LAYOUT_GDT_ADDR)), 0);
	assert_int_equal(ti_r64(gpa(f, LAYOUT_GDT_ADDR + 8)), 0);
	assert_int_equal(ti_r64(gpa(f, LAYOUT_GDT_ADDR + 0x10)), code);
	assert_int_equal(ti_r64(gpa(f, LAYOUT_GDT_ADDR + 0x18)), 0x00cf93000000ffffull);
}

/* ---- bzImage ------------------------------------------------------------- */

static void test_bz_good(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();
	const char *cmdline = "console=ttyS0 root=/dev/vda";
	size_t setup = ti_bz_setup_len(&o);
	size_t len = 0;
	uint8_t *img = ti_bz_build(&o, &len);

	f->cfg.cmdline = cmdline;
	f->cfg.rsdp_gpa = 0xe0000;
	assert_int_equal(boot_load_bzimage(&f->gm, img, len, &f->cfg, &f->out, f->err,
					   sizeof(f->err)), 0);
	assert_int_equal(f->out.mode, BOOT_MODE_LINUX64);
	assert_int_equal(f->out.kind, BOOT_KERNEL_BZIMAGE);
	assert_int_equal(f->out.rip, 0x100200);
	assert_int_equal(f->out.rsi, LAYOUT_ZERO_PAGE_ADDR);
	assert_int_equal(f->out.cr3, LAYOUT_PML4_ADDR);
	assert_true(f->out.rsp == 0 || f->out.rsp == LAYOUT_STACK_TOP);
	assert_int_equal(f->out.protocol, 0x020f);
	assert_int_equal(f->out.kernel_end, 0x100000 + o.pm_len);
	assert_int_equal(f->out.initrd_size, 0);

	/* Protected-mode part at 1 MiB, byte for byte; nothing past it. */
	assert_memory_equal(gpa(f, 0x100000), img + setup, o.pm_len);
	assert_int_equal(*gpa(f, 0x100000 + o.pm_len), 0);

	/* Setup header copied from 0x1f1 to 0x202 + img[0x201]. */
	assert_memory_equal(zp(f) + 0x202, "HdrS", 4);
	assert_int_equal(zp(f)[0x1f1], 4);
	assert_int_equal(ti_r16(zp(f) + 0x1fe), 0xaa55);
	assert_int_equal(ti_r16(zp(f) + 0x206), 0x020f);
	assert_int_equal(ti_r32(zp(f) + 0x260), o.init_size);
	assert_int_equal(ti_r64(zp(f) + 0x258), o.pref_address);
	assert_int_equal(zp(f)[0x1ef], 0);                       /* sentinel */
	/* Loader fields. */
	assert_int_equal(zp(f)[0x210], 0xff);                    /* type_of_loader */
	assert_int_equal(ti_r32(zp(f) + 0x228), LAYOUT_CMDLINE_ADDR);
	assert_int_equal(ti_r32(zp(f) + 0x0c8), 0);              /* ext_cmd_line_ptr */
	assert_string_equal((const char *)gpa(f, LAYOUT_CMDLINE_ADDR), cmdline);
	assert_int_equal(ti_r32(zp(f) + 0x218), 0);              /* ramdisk_image */
	assert_int_equal(ti_r32(zp(f) + 0x21c), 0);              /* ramdisk_size */
	assert_int_equal(ti_r64(zp(f) + 0x070), 0xe0000);        /* acpi_rsdp_addr */
	check_e820_64m(zp(f) + 0x2d0, zp(f)[0x1e8], 20);
	assert_int_equal(ti_r64(zp(f) + 0x2d0 + 3 * 20 + 8), 0); /* no fourth entry */

	check_gdt(f, 0x00af9b000000ffffull);
	check_pagetables(f);
	free(img);
}

static void test_bz_no_rsdp_no_cmdline(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();

	memset(f->ram + LAYOUT_CMDLINE_ADDR, 'x', 16);
	assert_int_equal(load_bz(f, &o), 0);
	assert_int_equal(ti_r64(zp(f) + 0x070), 0);
	assert_int_equal(*gpa(f, LAYOUT_CMDLINE_ADDR), 0);   /* empty command line */
}

static void test_bz_old_protocol(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();

	o.version = 0x020b;
	assert_int_equal(load_bz(f, &o), -ENOEXEC);
	assert_string_equal(f->err,
			    "kernel: boot protocol 2.11 is older than 2.12 (64-bit entry needs 2.12+)");
	o.version = 0x0206;
	assert_int_equal(load_bz(f, &o), -ENOEXEC);
	assert_non_null(strstr(f->err, "boot protocol 2.06 is older than 2.12"));
	o.version = 0x020c;
	assert_int_equal(load_bz(f, &o), 0);
}

static void test_bz_no_magic(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();
	size_t len = 0;
	uint8_t *img = ti_bz_build(&o, &len);

	memcpy(img + 0x202, "HdrZ", 4);
	assert_int_equal(boot_load_bzimage(&f->gm, img, len, &f->cfg, &f->out, f->err,
					   sizeof(f->err)), -ENOEXEC);
	assert_non_null(strstr(f->err, "HdrS"));
	free(img);
}

static void test_bz_truncated(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();
	size_t len = 0, setup = ti_bz_setup_len(&o);
	uint8_t *img = ti_bz_build(&o, &len);

	/* Shorter than boot sector + one setup sector. */
	assert_int_equal(boot_load_bzimage(&f->gm, img, 600, &f->cfg, &f->out, f->err,
					   sizeof(f->err)), -ENOEXEC);
	assert_non_null(strstr(f->err, "truncated"));
	/* Setup code only, no protected-mode part. */
	assert_int_equal(boot_load_bzimage(&f->gm, img, setup, &f->cfg, &f->out, f->err,
					   sizeof(f->err)), -ENOEXEC);
	assert_non_null(strstr(f->err, "truncated"));
	/* Protected-mode part shorter than syssize says. */
	assert_int_equal(boot_load_bzimage(&f->gm, img, len - 4096, &f->cfg, &f->out, f->err,
					   sizeof(f->err)), -ENOEXEC);
	assert_non_null(strstr(f->err, "protected-mode part"));
	/* The last 15 bytes are syssize's round-up slack: accepted. */
	assert_int_equal(boot_load_bzimage(&f->gm, img, len, &f->cfg, &f->out, f->err,
					   sizeof(f->err)), 0);
	free(img);
}

static void test_bz_not_64bit(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();

	o.xloadflags = 0x0002;   /* can be above 4G, but no 64-bit entry */
	assert_int_equal(load_bz(f, &o), -ENOEXEC);
	assert_non_null(strstr(f->err, "XLF_KERNEL_64"));
}

static void test_bz_not_loaded_high(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();

	o.loadflags = 0;
	assert_int_equal(load_bz(f, &o), -ENOEXEC);
	assert_non_null(strstr(f->err, "LOADED_HIGH"));
}

static void test_bz_setup_sects_zero(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();
	size_t len = 0;
	uint8_t *img;

	o.setup_sects = 0;   /* means 4: the kernel starts at 5 * 512 */
	img = ti_bz_build(&o, &len);
	assert_int_equal(len, 5 * 512 + o.pm_len);
	assert_int_equal(boot_load_bzimage(&f->gm, img, len, &f->cfg, &f->out, f->err,
					   sizeof(f->err)), 0);
	assert_memory_equal(gpa(f, 0x100000), img + 5 * 512, o.pm_len);
	free(img);

	/* A different count moves the kernel: 8 setup sectors. */
	o.setup_sects = 8;
	img = ti_bz_build(&o, &len);
	assert_int_equal(boot_load_bzimage(&f->gm, img, len, &f->cfg, &f->out, f->err,
					   sizeof(f->err)), 0);
	assert_memory_equal(gpa(f, 0x100000), img + 9 * 512, o.pm_len);
	free(img);
}

static void test_bz_bad_alignment(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();

	o.kernel_alignment = 0x300000;
	assert_int_equal(load_bz(f, &o), -ENOEXEC);
	assert_non_null(strstr(f->err, "kernel_alignment"));
	/* A non-relocatable kernel does not use the alignment. */
	o.relocatable = 0;
	assert_int_equal(load_bz(f, &o), 0);
}

static void test_bz_cmdline_too_long(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();

	o.cmdline_size = 16;
	f->cfg.cmdline = "0123456789abcdefX";   /* 17 */
	assert_int_equal(load_bz(f, &o), -E2BIG);
	assert_non_null(strstr(f->err, "command line is 17 bytes"));
	f->cfg.cmdline = "0123456789abcdef";    /* 16: exactly the limit */
	assert_int_equal(load_bz(f, &o), 0);
	assert_string_equal((const char *)gpa(f, LAYOUT_CMDLINE_ADDR), f->cfg.cmdline);
}

static void test_bz_initrd_placement(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();
	size_t n = MiB(1) + 123;
	uint8_t *rd = malloc(n);
	uint64_t at, kernel_area_end = o.pref_address + o.init_size;

	for (size_t i = 0; i < n; i++)
		rd[i] = (uint8_t)(i * 13 + 5);
	f->cfg.initrd_data = rd;
	f->cfg.initrd_size = n;

	/* initrd_addr_max below the end of RAM: the initrd must end at or below it. */
	o.initrd_addr_max = 0x2ffffff;
	assert_int_equal(load_bz(f, &o), 0);
	at = ti_r32(zp(f) + 0x218);
	assert_int_equal(ti_r32(zp(f) + 0x21c), n);
	assert_int_equal(ti_r32(zp(f) + 0x0c0), 0);   /* ext_ramdisk_image */
	assert_int_equal(ti_r32(zp(f) + 0x0c4), 0);   /* ext_ramdisk_size */
	assert_int_equal(at % 4096, 0);
	assert_true(at + n - 1 <= o.initrd_addr_max);
	assert_true(at >= kernel_area_end);
	assert_int_equal(at, (0x3000000 - n) & ~0xfffull);   /* as high as possible */
	assert_int_equal(f->out.initrd_gpa, at);
	assert_int_equal(f->out.initrd_size, n);
	assert_memory_equal(gpa(f, at), rd, n);

	/* Default limit: the end of RAM. */
	o.initrd_addr_max = 0x7fffffff;
	assert_int_equal(load_bz(f, &o), 0);
	at = ti_r32(zp(f) + 0x218);
	assert_int_equal(at, (RAM_SIZE - n) & ~0xfffull);
	assert_memory_equal(gpa(f, at), rd, n);
	free(rd);
}

static void test_bz_initrd_too_big(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();
	size_t n = MiB(41);   /* the kernel's area ends at 24 MiB: 40 MiB are left */
	uint8_t *rd = calloc(1, n);

	f->cfg.initrd_data = rd;
	f->cfg.initrd_size = n;
	assert_int_equal(load_bz(f, &o), -ENOMEM);
	assert_non_null(strstr(f->err, "initrd (41 MiB) does not fit in guest RAM"));
	/* 39 MiB fits, above the kernel. */
	f->cfg.initrd_size = MiB(39);
	assert_int_equal(load_bz(f, &o), 0);
	assert_true(ti_r32(zp(f) + 0x218) >= o.pref_address + o.init_size);
	free(rd);
}

static void test_bz_ram_too_small(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();
	struct guest_mem small;

	/* 20 MiB of RAM: the kernel decompresses to 16..24 MiB. */
	gm_init_fake(&small, 0, f->ram, MiB(20));
	assert_int_equal(boot_load_bzimage(&small, (const uint8_t *)"", 0, &f->cfg, &f->out,
					   f->err, sizeof(f->err)), -ENOEXEC);
	{
		size_t len = 0;
		uint8_t *img = ti_bz_build(&o, &len);

		assert_int_equal(boot_load_bzimage(&small, img, len, &f->cfg, &f->out, f->err,
						   sizeof(f->err)), -ENOMEM);
		assert_non_null(strstr(f->err, "guest RAM too small"));
		assert_non_null(strstr(f->err, "24 MiB"));
		/* Nothing was copied to 1 MiB. */
		assert_int_equal(*gpa(f, 0x100000), 0);
		free(img);
	}
	/* A relocatable kernel with a low pref_address fits: 2 MiB + 8 MiB. */
	o.pref_address = 0x200000;
	{
		size_t len = 0;
		uint8_t *img = ti_bz_build(&o, &len);

		assert_int_equal(boot_load_bzimage(&small, img, len, &f->cfg, &f->out, f->err,
						   sizeof(f->err)), 0);
		free(img);
	}
}

static void test_bz_initrd_file(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();
	char path[128];
	uint8_t data[10000];
	uint64_t at;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i ^ 0x5a);
	path_in(f, path, sizeof(path), "initrd.img");
	write_file(path, data, sizeof(data));
	f->cfg.initrd_path = path;
	assert_int_equal(load_bz(f, &o), 0);
	at = ti_r32(zp(f) + 0x218);
	assert_int_equal(ti_r32(zp(f) + 0x21c), sizeof(data));
	assert_memory_equal(gpa(f, at), data, sizeof(data));
}

/* ---- ELF ------------------------------------------------------------------ */

static int load_elf(struct fx *f, const uint8_t *img, size_t len)
{
	f->err[0] = '\0';
	return boot_load_elf(&f->gm, img, len, &f->cfg, &f->out, f->err, sizeof(f->err));
}

static void check_segment(struct fx *f, unsigned idx, const struct ti_seg *s)
{
	const uint8_t *p = gpa(f, s->paddr);

	for (uint64_t j = 0; j < s->filesz; j++)
		if (p[j] != ti_pattern(idx + 1, j))
			fail_msg("segment %u byte %llu", idx, (unsigned long long)j);
	for (uint64_t j = s->filesz; j < s->memsz; j++)
		if (p[j] != 0)
			fail_msg("segment %u bss byte %llu not zeroed", idx, (unsigned long long)j);
}

static void test_elf_pvh(void **state)
{
	struct fx *f = *state;
	struct ti_seg segs[2] = {
		{ 0xffffffff81000000ull, 0x1000000, 0x3000, 0x5000 },
		{ 0xffffffff81200000ull, 0x1200000, 0x800, 0x2800 },
	};
	uint8_t rd[8192];
	size_t len = 0;
	uint8_t *img = ti_elf_build(0xffffffff81000000ull, segs, 2, 1, 0x1000100, &len);
	const uint8_t *si = gpa(f, LAYOUT_PVH_INFO_ADDR);
	uint64_t modlist, memmap, at;

	memset(f->ram + MiB(1), 0xaa, MiB(20));   /* the bss must be cleared */
	memset(rd, 0x3c, sizeof(rd));
	f->cfg.cmdline = "console=hvc0";
	f->cfg.rsdp_gpa = 0xe0000;
	f->cfg.initrd_data = rd;
	f->cfg.initrd_size = sizeof(rd);
	assert_int_equal(load_elf(f, img, len), 0);
	assert_int_equal(f->out.mode, BOOT_MODE_PVH32);
	assert_int_equal(f->out.kind, BOOT_KERNEL_ELF_PVH);
	assert_int_equal(f->out.rip, 0x1000100);
	assert_int_equal(f->out.rbx, LAYOUT_PVH_INFO_ADDR);
	assert_int_equal(f->out.kernel_end, 0x1202800);
	check_segment(f, 0, &segs[0]);
	check_segment(f, 1, &segs[1]);
	check_gdt(f, 0x00cf9b000000ffffull);

	assert_int_equal(ti_r32(si), 0x336ec578);
	assert_int_equal(ti_r32(si + 4), 1);                   /* version */
	assert_int_equal(ti_r32(si + 12), 1);                  /* nr_modules */
	assert_int_equal(ti_r64(si + 24), LAYOUT_CMDLINE_ADDR);
	assert_string_equal((const char *)gpa(f, LAYOUT_CMDLINE_ADDR), "console=hvc0");
	assert_int_equal(ti_r64(si + 32), 0xe0000);            /* rsdp_paddr */
	assert_int_equal(ti_r32(si + 52), 0);                  /* reserved */

	modlist = ti_r64(si + 16);
	assert_true(modlist > LAYOUT_PVH_INFO_ADDR && modlist < LAYOUT_ZERO_PAGE_ADDR);
	at = ti_r64(gpa(f, modlist));
	assert_int_equal(ti_r64(gpa(f, modlist + 8)), sizeof(rd));
	assert_int_equal(ti_r64(gpa(f, modlist + 16)), 0);
	assert_int_equal(at % 4096, 0);
	assert_true(at >= 0x1202800);
	assert_int_equal(at, (RAM_SIZE - sizeof(rd)) & ~0xfffull);
	assert_memory_equal(gpa(f, at), rd, sizeof(rd));
	assert_int_equal(f->out.initrd_gpa, at);

	memmap = ti_r64(si + 40);
	assert_true(memmap > LAYOUT_PVH_INFO_ADDR && memmap < LAYOUT_ZERO_PAGE_ADDR);
	check_e820_64m(gpa(f, memmap), ti_r32(si + 48), 24);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(ti_r32(gpa(f, memmap + i * 24 + 20)), 0);
	free(img);
}

/*
 * On memfd RAM the bss is cleared only where the memfd holds data: a page
 * written before the load is zeroed, the never-touched pages stay holes (not
 * faulted in, not resident), and all of it reads as zero.
 */
static void test_elf_bss_fresh_ram(void **state)
{
	struct fx *f = *state;
	struct ti_seg seg = { 0xffffffff81000000ull, 0x1000000, 0x800, 0x40800 };
	struct guest_mem gm;
	size_t len = 0;
	uint8_t *img = ti_elf_build(0xffffffff81000000ull, &seg, 1, 1, 0x1000100, &len);
	uint8_t *base, *dirty;
	off_t bss_page, dirty_off, end_off, r;

	assert_non_null(img);
	assert_int_equal(gm_init(&gm, MiB(64), GM_NO_THP), 0);
	base = gm_ptr(&gm, seg.paddr, seg.memsz);
	assert_non_null(base);
	dirty = base + 0x20000;                   /* a page inside the bss, written before */
	memset(dirty, 0xaa, 4096);
	f->cfg.cmdline = "console=hvc0";
	f->cfg.rsdp_gpa = 0xe0000;
	assert_int_equal(boot_load_elf(&gm, img, len, &f->cfg, &f->out, f->err, sizeof(f->err)), 0);
	free(img);

	/* Before reading anything back (a read would fault pages in). */
	bss_page = (base - (uint8_t *)gm.mapping) + 0x1000;
	dirty_off = dirty - (uint8_t *)gm.mapping;
	end_off = (base - (uint8_t *)gm.mapping) + (off_t)seg.memsz;
	assert_int_equal(lseek(gm.memfd, bss_page, SEEK_DATA), dirty_off);
	assert_int_equal(lseek(gm.memfd, dirty_off, SEEK_HOLE), dirty_off + 4096);
	r = lseek(gm.memfd, dirty_off + 4096, SEEK_DATA);
	assert_true(r < 0 || r >= end_off);

	for (uint64_t j = 0; j < seg.filesz; j++)
		if (base[j] != ti_pattern(1, j))
			fail_msg("byte %llu", (unsigned long long)j);
	for (uint64_t j = seg.filesz; j < seg.memsz; j++)
		if (base[j] != 0)
			fail_msg("bss byte %llu not zeroed", (unsigned long long)j);
	gm_exit(&gm);
}

static void test_elf_pvh_no_initrd(void **state)
{
	struct fx *f = *state;
	struct ti_seg seg = { 0x200000, 0x200000, 0x100, 0x100 };
	size_t len = 0;
	uint8_t *img = ti_elf_build(0x200000, &seg, 1, 1, 0x200000, &len);
	const uint8_t *si = gpa(f, LAYOUT_PVH_INFO_ADDR);

	assert_int_equal(load_elf(f, img, len), 0);
	assert_int_equal(ti_r32(si + 12), 0);
	assert_int_equal(ti_r64(si + 16), 0);
	assert_int_equal(ti_r64(si + 32), 0);      /* no ACPI */
	assert_int_equal(*gpa(f, LAYOUT_CMDLINE_ADDR), 0);
	free(img);
}

static void test_elf64_virtual_entry(void **state)
{
	struct fx *f = *state;
	struct ti_seg segs[2] = {
		{ 0xffffffff81000000ull, 0x1000000, 0x2000, 0x4000 },
		{ 0xffffffff82000000ull, 0x2000000, 0x1000, 0x1000 },
	};
	uint8_t rd[5000];
	size_t len = 0;
	uint8_t *img = ti_elf_build(0xffffffff82000040ull, segs, 2, 0, 0, &len);
	uint64_t at;

	memset(rd, 0x77, sizeof(rd));
	f->cfg.cmdline = "quiet";
	f->cfg.rsdp_gpa = 0xe0000;
	f->cfg.initrd_data = rd;
	f->cfg.initrd_size = sizeof(rd);
	assert_int_equal(load_elf(f, img, len), 0);
	assert_int_equal(f->out.mode, BOOT_MODE_ELF64);
	assert_int_equal(f->out.kind, BOOT_KERNEL_ELF64);
	assert_int_equal(f->out.rip, 0x2000040);     /* translated through segment 2 */
	assert_int_equal(f->out.rsi, LAYOUT_ZERO_PAGE_ADDR);
	assert_int_equal(f->out.cr3, LAYOUT_PML4_ADDR);
	check_segment(f, 0, &segs[0]);
	check_segment(f, 1, &segs[1]);
	check_gdt(f, 0x00af9b000000ffffull);
	check_pagetables(f);

	/* A zero page without a kernel-supplied header. */
	assert_memory_equal(zp(f) + 0x202, "HdrS", 4);
	assert_true(ti_r16(zp(f) + 0x206) >= 0x020c);
	assert_int_equal(ti_r16(zp(f) + 0x1fe), 0xaa55);
	assert_int_equal(zp(f)[0x210], 0xff);
	assert_int_equal(ti_r32(zp(f) + 0x228), LAYOUT_CMDLINE_ADDR);
	assert_string_equal((const char *)gpa(f, LAYOUT_CMDLINE_ADDR), "quiet");
	assert_int_equal(ti_r64(zp(f) + 0x070), 0xe0000);
	check_e820_64m(zp(f) + 0x2d0, zp(f)[0x1e8], 20);
	at = ti_r32(zp(f) + 0x218);
	assert_int_equal(ti_r32(zp(f) + 0x21c), sizeof(rd));
	assert_true(at >= 0x2001000 && at % 4096 == 0);
	assert_memory_equal(gpa(f, at), rd, sizeof(rd));
	free(img);
}

static void test_elf64_physical_entry(void **state)
{
	struct fx *f = *state;
	struct ti_seg seg = { 0xffffffff81000000ull, 0x1000000, 0x2000, 0x2000 };
	size_t len = 0;
	uint8_t *img = ti_elf_build(0x1000080, &seg, 1, 0, 0, &len);

	assert_int_equal(load_elf(f, img, len), 0);
	assert_int_equal(f->out.rip, 0x1000080);
	free(img);
}

/* Note in a SHT_NOTE section only (no PT_NOTE): still found. */
static void test_elf_pvh_note_in_section(void **state)
{
	struct fx *f = *state;
	struct ti_seg seg = { 0x200000, 0x200000, 0x100, 0x100 };
	size_t len = 0, total;
	uint8_t *img = ti_elf_build(0x200000, &seg, 1, 1, 0x200040, &len);
	uint8_t *big;
	size_t note_off = 64 + 2 * 56;

	/* Turn the PT_NOTE into PT_NULL, add one SHT_NOTE section header at the end. */
	ti_w32(img + 64 + 56, 0);
	total = len + 64;
	big = calloc(1, total);
	memcpy(big, img, len);
	ti_w64(big + 40, len);               /* e_shoff */
	ti_w16(big + 60, 1);                 /* e_shnum */
	ti_w32(big + len + 4, 7);            /* SHT_NOTE */
	ti_w64(big + len + 24, note_off);
	ti_w64(big + len + 32, 20);
	ti_w64(big + len + 48, 4);
	assert_int_equal(load_elf(f, big, total), 0);
	assert_int_equal(f->out.mode, BOOT_MODE_PVH32);
	assert_int_equal(f->out.rip, 0x200040);
	free(big);
	free(img);
}

struct bad_elf {
	const char *what;
	size_t phdr_field;      /* offset inside the first phdr, or (size_t)-1 for the ehdr */
	size_t off;
	uint64_t value;
	int width;              /* 2, 4 or 8 */
	const char *expect;
};

static void test_elf_malformed(void **state)
{
	struct fx *f = *state;
	static const struct bad_elf cases[] = {
		{ "phoff past the end", (size_t)-1, 32, 0x100000, 8, "program headers" },
		{ "phoff overflowing", (size_t)-1, 32, 0xffffffffffffffc0ull, 8, "program headers" },
		{ "phnum too big for the file", (size_t)-1, 56, 200, 2, "program headers" },
		{ "phnum zero", (size_t)-1, 56, 0, 2, "program headers" },
		{ "phentsize", (size_t)-1, 54, 32, 2, "e_phentsize" },
		{ "class 32", (size_t)-1, 4, 1, 1, "ELF64" },
		{ "big-endian", (size_t)-1, 5, 2, 1, "ELF64" },
		{ "machine i386", (size_t)-1, 18, 3, 2, "x86-64" },
		{ "type relocatable", (size_t)-1, 16, 1, 2, "not executable" },
		{ "ehsize", (size_t)-1, 52, 52, 2, "header size" },
		{ "segment data past the end", 0, 8, 0x10000, 8, "outside the file" },
		{ "segment offset overflowing", 0, 8, 0xfffffffffffff000ull, 8, "outside the file" },
		{ "filesz past the end", 0, 32, 0x100000, 8, "outside the file" },
		{ "filesz > memsz", 0, 40, 0x10, 8, "p_filesz > p_memsz" },
		{ "paddr + memsz overflowing", 0, 24, 0xffffffffffffff00ull, 8, "overflows" },
		{ "segment outside RAM", 0, 24, MiB(128), 8, "outside guest RAM" },
		{ "segment straddling the end of RAM", 0, 24, RAM_SIZE - 0x80, 8, "outside guest RAM" },
		{ "segment into the boot data", 0, 24, 0x90000, 8, "below 1 MiB" },
		{ "segment at 0", 0, 24, 0, 8, "below 1 MiB" },
		{ "huge memsz", 0, 40, 0x7fffffffffffffffull, 8, "outside guest RAM" },
		{ "no PT_LOAD", 0, 0, 6, 4, "no loadable segment" },
	};
	struct ti_seg seg = { 0x200000, 0x200000, 0x100, 0x200 };
	size_t len = 0;
	uint8_t *good = ti_elf_build(0x200000, &seg, 1, 0, 0, &len);

	assert_int_equal(load_elf(f, good, len), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_elf *c = &cases[i];
		uint8_t *img = malloc(len);
		size_t at = c->off + (c->phdr_field == (size_t)-1 ? 0 : 64);
		int rc;

		memcpy(img, good, len);
		if (c->width == 1)
			img[at] = (uint8_t)c->value;
		else if (c->width == 2)
			ti_w16(img + at, (uint16_t)c->value);
		else if (c->width == 4)
			ti_w32(img + at, (uint32_t)c->value);
		else
			ti_w64(img + at, c->value);
		rc = load_elf(f, img, len);
		if (rc >= 0 || !strstr(f->err, c->expect))
			fail_msg("%s: rc %d, err \"%s\", expected \"%s\"", c->what, rc, f->err,
				 c->expect);
		free(img);
	}
	/* Truncated header. */
	assert_true(load_elf(f, good, 40) < 0);
	assert_non_null(strstr(f->err, "truncated"));
	/* Truncated just before the segment data. */
	assert_true(load_elf(f, good, len - 1) < 0);
	free(good);
}

static void test_elf_entry_checks(void **state)
{
	struct fx *f = *state;
	struct ti_seg seg = { 0x200000, 0x200000, 0x100, 0x1000 };
	size_t len = 0;
	uint8_t *img;

	/* ELF64 entry outside every segment. */
	img = ti_elf_build(0x400000, &seg, 1, 0, 0, &len);
	assert_int_equal(load_elf(f, img, len), -ENOEXEC);
	assert_non_null(strstr(f->err, "not inside a loaded segment"));
	free(img);
	/* PVH entry outside every segment. */
	img = ti_elf_build(0x200000, &seg, 1, 1, 0x300000, &len);
	assert_int_equal(load_elf(f, img, len), -ENOEXEC);
	assert_non_null(strstr(f->err, "PVH entry"));
	free(img);
	/* PVH entry in the bss part counts (it is loaded memory). */
	img = ti_elf_build(0x200000, &seg, 1, 1, 0x200800, &len);
	assert_int_equal(load_elf(f, img, len), 0);
	free(img);
}

static void test_elf_bad_notes(void **state)
{
	struct fx *f = *state;
	struct ti_seg seg = { 0x200000, 0x200000, 0x100, 0x100 };
	size_t len = 0, note = 64 + 2 * 56;
	uint8_t *img = ti_elf_build(0x200000, &seg, 1, 1, 0x200000, &len);
	uint8_t *c = malloc(len);

	/* descsz 2: a PHYS32_ENTRY note must carry 4 or 8 bytes. */
	memcpy(c, img, len);
	ti_w32(c + note + 4, 2);
	assert_true(load_elf(f, c, len) < 0);
	assert_non_null(strstr(f->err, "PHYS32_ENTRY"));
	/* namesz running past the note segment. */
	memcpy(c, img, len);
	ti_w32(c + note, 0xfffffff0u);
	assert_true(load_elf(f, c, len) < 0);
	assert_non_null(strstr(f->err, "overruns"));
	/* An 8-byte entry (there is room before the segment data) above 4 GiB. */
	memcpy(c, img, len);
	ti_w64(c + 64 + 56 + 32, 24);        /* PT_NOTE p_filesz */
	ti_w32(c + note + 4, 8);
	ti_w64(c + note + 16, 0x100000000ull);
	assert_true(load_elf(f, c, len) < 0);
	assert_non_null(strstr(f->err, "not a 32-bit address"));
	/* The same 8-byte form with a 32-bit value works. */
	ti_w64(c + note + 16, 0x200010);
	assert_int_equal(load_elf(f, c, len), 0);
	assert_int_equal(f->out.rip, 0x200010);
	/* A note of another owner/type is skipped: plain ELF64. */
	memcpy(c, img, len);
	memcpy(c + note + 12, "Xyz", 4);
	assert_int_equal(load_elf(f, c, len), 0);
	assert_int_equal(f->out.mode, BOOT_MODE_ELF64);
	free(c);
	free(img);
}

/* ---- boot_load: files ----------------------------------------------------- */

static int load_file(struct fx *f, const char *kernel, const char *initrd)
{
	f->cfg.kernel_path = kernel;
	f->cfg.initrd_path = initrd;
	f->err[0] = '\0';
	return boot_load(&f->gm, &f->cfg, &f->out, f->err, sizeof(f->err));
}

static void test_load_files(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();
	char kpath[128], ipath[128], expect[256];
	uint8_t initrd[3000];
	size_t len = 0;
	uint8_t *img = ti_bz_build(&o, &len);

	memset(initrd, 0x42, sizeof(initrd));
	path_in(f, kpath, sizeof(kpath), "bzImage");
	path_in(f, ipath, sizeof(ipath), "initrd");
	write_file(kpath, img, len);
	write_file(ipath, initrd, sizeof(initrd));
	assert_int_equal(load_file(f, kpath, ipath), 0);
	assert_int_equal(f->out.kind, BOOT_KERNEL_BZIMAGE);
	assert_memory_equal(gpa(f, 0x100000), img + ti_bz_setup_len(&o), o.pm_len);
	assert_int_equal(f->out.initrd_size, sizeof(initrd));
	assert_memory_equal(gpa(f, f->out.initrd_gpa), initrd, sizeof(initrd));

	/* Directory as kernel, as initrd. */
	assert_int_equal(load_file(f, f->dir, NULL), -EISDIR);
	snprintf(expect, sizeof(expect), "kernel %s: is a directory", f->dir);
	assert_string_equal(f->err, expect);
	assert_int_equal(load_file(f, kpath, f->dir), -EISDIR);
	snprintf(expect, sizeof(expect), "initrd %s: is a directory", f->dir);
	assert_string_equal(f->err, expect);

	/* Missing files. */
	path_in(f, expect, sizeof(expect), "nope");
	assert_int_equal(load_file(f, expect, NULL), -ENOENT);
	assert_non_null(strstr(f->err, "No such file"));
	assert_int_equal(load_file(f, kpath, expect), -ENOENT);
	assert_non_null(strstr(f->err, "initrd"));

	/* Empty kernel, empty initrd. */
	path_in(f, ipath, sizeof(ipath), "empty");
	write_file(ipath, "", 0);
	assert_true(load_file(f, ipath, NULL) < 0);
	assert_non_null(strstr(f->err, "empty"));
	assert_true(load_file(f, kpath, ipath) < 0);
	assert_non_null(strstr(f->err, "initrd"));

	/* Bad magic; too short to tell. */
	{
		uint8_t junk[4096];

		memset(junk, 0x90, sizeof(junk));
		path_in(f, ipath, sizeof(ipath), "junk");
		write_file(ipath, junk, sizeof(junk));
		assert_int_equal(load_file(f, ipath, NULL), -ENOEXEC);
		snprintf(expect, sizeof(expect), "kernel %s: not a bzImage or ELF64 kernel (bad magic)",
			 ipath);
		assert_string_equal(f->err, expect);
		write_file(ipath, junk, 100);
		assert_int_equal(load_file(f, ipath, NULL), -ENOEXEC);
		assert_non_null(strstr(f->err, "truncated"));
		/* A bzImage cut in the middle of its kernel. */
		write_file(ipath, img, len / 2);
		assert_int_equal(load_file(f, ipath, NULL), -ENOEXEC);
		assert_non_null(strstr(f->err, "truncated"));
	}
	free(img);

	/* ELF through boot_load. */
	{
		struct ti_seg seg = { 0x200000, 0x200000, 0x100, 0x100 };
		uint8_t *elf = ti_elf_build(0x200000, &seg, 1, 1, 0x200000, &len);

		path_in(f, ipath, sizeof(ipath), "vmlinux");
		write_file(ipath, elf, len);
		assert_int_equal(load_file(f, ipath, NULL), 0);
		assert_int_equal(f->out.kind, BOOT_KERNEL_ELF_PVH);
		free(elf);
	}
}

static void test_load_too_big(void **state)
{
	struct fx *f = *state;
	struct ti_bz o = ti_bz_default();
	struct guest_mem gm;
	char kpath[128], ipath[128], expect[300];
	size_t len = 0;
	uint8_t *img = ti_bz_build(&o, &len);
	int fd;

	path_in(f, kpath, sizeof(kpath), "bzImage");
	write_file(kpath, img, len);
	free(img);
	path_in(f, ipath, sizeof(ipath), "big.initrd");
	fd = open(ipath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)MiB(300)), 0);   /* sparse */
	close(fd);

	assert_int_equal(gm_init(&gm, MiB(256), GM_NO_THP), 0);
	f->cfg.kernel_path = kpath;
	f->cfg.initrd_path = ipath;
	assert_int_equal(boot_load(&gm, &f->cfg, &f->out, f->err, sizeof(f->err)), -EFBIG);
	snprintf(expect, sizeof(expect), "initrd %s (300 MiB) is larger than guest RAM (256 MiB)",
		 ipath);
	assert_string_equal(f->err, expect);

	/* Kernel file larger than RAM. */
	f->cfg.kernel_path = ipath;
	f->cfg.initrd_path = NULL;
	assert_int_equal(boot_load(&gm, &f->cfg, &f->out, f->err, sizeof(f->err)), -EFBIG);
	snprintf(expect, sizeof(expect), "kernel %s (300 MiB) is larger than guest RAM (256 MiB)",
		 ipath);
	assert_string_equal(f->err, expect);
	gm_exit(&gm);
}

/* ---- bad arguments --------------------------------------------------------- */

static void test_bad_args(void **state)
{
	struct fx *f = *state;
	uint8_t b[16] = { 0 };

	assert_int_equal(boot_load(NULL, &f->cfg, &f->out, f->err, sizeof(f->err)), -EINVAL);
	assert_int_equal(boot_load(&f->gm, NULL, &f->out, f->err, sizeof(f->err)), -EINVAL);
	assert_int_equal(boot_load(&f->gm, &f->cfg, NULL, f->err, sizeof(f->err)), -EINVAL);
	f->cfg.kernel_path = NULL;
	assert_int_equal(boot_load(&f->gm, &f->cfg, &f->out, f->err, sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, "no kernel"));
	/* err may be NULL. */
	assert_int_equal(boot_load(&f->gm, &f->cfg, &f->out, NULL, 0), -EINVAL);

	assert_int_equal(boot_load_bzimage(NULL, b, sizeof(b), &f->cfg, &f->out, NULL, 0), -EINVAL);
	assert_int_equal(boot_load_bzimage(&f->gm, NULL, 0, &f->cfg, &f->out, NULL, 0), -EINVAL);
	assert_int_equal(boot_load_bzimage(&f->gm, b, sizeof(b), NULL, &f->out, NULL, 0), -EINVAL);
	assert_int_equal(boot_load_bzimage(&f->gm, b, sizeof(b), &f->cfg, NULL, NULL, 0), -EINVAL);
	assert_int_equal(boot_load_bzimage(&f->gm, b, sizeof(b), &f->cfg, &f->out, NULL, 0),
			 -ENOEXEC);
	assert_int_equal(boot_load_elf(NULL, b, sizeof(b), &f->cfg, &f->out, NULL, 0), -EINVAL);
	assert_int_equal(boot_load_elf(&f->gm, NULL, 0, &f->cfg, &f->out, NULL, 0), -EINVAL);
	assert_int_equal(boot_load_elf(&f->gm, b, sizeof(b), NULL, &f->out, NULL, 0), -EINVAL);
	assert_int_equal(boot_load_elf(&f->gm, b, sizeof(b), &f->cfg, NULL, NULL, 0), -EINVAL);
	assert_int_equal(boot_load_elf(&f->gm, b, 0, &f->cfg, &f->out, f->err, sizeof(f->err)),
			 -ENOEXEC);
	/* A tiny err buffer is truncated, not overrun. */
	{
		char small[8];

		memset(small, 'Z', sizeof(small));
		assert_int_equal(boot_load_elf(&f->gm, b, 0, &f->cfg, &f->out, small, 5), -ENOEXEC);
		assert_int_equal(strlen(small), 4);
		assert_int_equal(small[5], 'Z');
	}
	/* In-memory initrd of size 0; initrd larger than RAM. */
	f->cfg.initrd_data = b;
	f->cfg.initrd_size = 0;
	assert_int_equal(boot_load_elf(&f->gm, b, sizeof(b), &f->cfg, &f->out, f->err,
				       sizeof(f->err)), -EINVAL);
	f->cfg.initrd_size = RAM_SIZE + 1;
	assert_int_equal(boot_load_elf(&f->gm, b, sizeof(b), &f->cfg, &f->out, f->err,
				       sizeof(f->err)), -EFBIG);
	assert_non_null(strstr(f->err, "larger than guest RAM"));

	assert_int_equal(boot_setup_pagetables(NULL), -EINVAL);
	assert_int_equal(boot_setup_gdt(NULL), -EINVAL);
	assert_int_equal(boot_build_e820(NULL, NULL, 0), -EINVAL);
	{
		struct guest_mem tiny;

		/* 16 KiB of RAM covers the GDT but not the page tables at 0x9000+. */
		gm_init_fake(&tiny, 0, f->ram, KiB(16));
		assert_int_equal(boot_setup_gdt(&tiny), 0);
		assert_int_equal(boot_setup_pagetables(&tiny), -EFAULT);
	}
}

/* ---- e820 ---------------------------------------------------------------- */

static void test_e820(void **state)
{
	struct fx *f = *state;
	struct boot_e820 map[BOOT_E820_MAX];
	struct guest_mem gm;
	int n;

	n = boot_build_e820(&f->gm, map, BOOT_E820_MAX);
	assert_int_equal(n, 3);
	assert_int_equal(map[0].addr, 0);
	assert_int_equal(map[0].size, LAYOUT_EBDA_START);
	assert_int_equal(map[0].type, 1);
	assert_int_equal(map[1].addr, LAYOUT_EBDA_START);
	assert_int_equal(map[1].addr + map[1].size, MiB(1));
	assert_int_equal(map[1].type, 2);
	assert_int_equal(map[2].addr, MiB(1));
	assert_int_equal(map[2].addr + map[2].size, RAM_SIZE);
	assert_int_equal(map[2].type, 1);
	/* The ACPI tables' home is reserved. */
	assert_true(LAYOUT_ACPI_ADDR >= map[1].addr &&
		    LAYOUT_ACPI_ADDR + LAYOUT_ACPI_SIZE <= map[1].addr + map[1].size);

	assert_int_equal(boot_build_e820(&f->gm, map, 2), -ENOSPC);
	gm_init_fake(&gm, 0, f->ram, MiB(1));
	assert_int_equal(boot_build_e820(&gm, map, BOOT_E820_MAX), -EINVAL);
	gm_init_fake(&gm, MiB(1), f->ram, MiB(16));   /* no RAM at 0 */
	assert_int_equal(boot_build_e820(&gm, map, BOOT_E820_MAX), -EINVAL);

	/* Real guest memory above the 32-bit hole: 3 GiB low + 64 MiB high. */
	assert_int_equal(gm_init(&gm, GiB(3) + MiB(64), GM_NO_THP), 0);
	n = boot_build_e820(&gm, map, BOOT_E820_MAX);
	assert_int_equal(n, 4);
	assert_int_equal(map[2].addr + map[2].size, LAYOUT_MMIO32_START);
	assert_int_equal(map[3].addr, GiB(4));
	assert_int_equal(map[3].size, MiB(64));
	assert_int_equal(map[3].type, 1);
	gm_exit(&gm);
}

/* ---- a real kernel, when one is given ------------------------------------- */

static void test_real_bzimage(void **state)
{
	struct fx *f = *state;
	const char *path = getenv("KESTREL_TEST_BZIMAGE");
	struct guest_mem gm;
	struct stat st;
	int rc;

	if (!path || !*path) {
		print_message("KESTREL_TEST_BZIMAGE not set: skipping the real-kernel test\n");
		skip();
	}
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(gm_init(&gm, MiB(512), GM_NO_THP), 0);
	f->cfg.kernel_path = path;
	f->cfg.cmdline = "console=ttyS0 panic=-1";
	f->cfg.rsdp_gpa = 0xe0000;
	rc = boot_load(&gm, &f->cfg, &f->out, f->err, sizeof(f->err));
	if (rc)
		fail_msg("boot_load(%s): %d: %s", path, rc, f->err);
	assert_int_equal(f->out.kind, BOOT_KERNEL_BZIMAGE);
	assert_int_equal(f->out.rip, 0x100200);
	assert_true(f->out.protocol >= 0x020c);
	{
		const uint8_t *z = gm_ptr(&gm, LAYOUT_ZERO_PAGE_ADDR, 4096);
		const uint8_t *k = gm_ptr(&gm, 0x100000, 16);
		uint8_t hdr[1024];
		unsigned sects;
		int fd = open(path, O_RDONLY);

		assert_true(fd >= 0);
		assert_int_equal(read(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
		sects = hdr[0x1f1] ? hdr[0x1f1] : 4;
		assert_int_equal(f->out.kernel_end, 0x100000 + (uint64_t)st.st_size - (sects + 1) * 512);
		/* The first bytes at 1 MiB are the file's bytes after the setup code. */
		assert_int_equal(pread(fd, hdr, 16, (sects + 1) * 512), 16);
		assert_memory_equal(k, hdr, 16);
		close(fd);
		assert_memory_equal(z + 0x202, "HdrS", 4);
		assert_int_equal(z[0x210], 0xff);
		assert_int_equal(z[0x1e8], 3);
		print_message("real kernel: protocol %u.%02u, %lld bytes\n", f->out.protocol >> 8,
			      f->out.protocol & 0xff, (long long)st.st_size);
	}
	gm_exit(&gm);
}

/* An uncompressed vmlinux (e.g. extracted from a bzImage's payload) boots the PVH way. */
static void test_real_vmlinux(void **state)
{
	struct fx *f = *state;
	const char *path = getenv("KESTREL_TEST_VMLINUX");
	struct guest_mem gm;
	const uint8_t *si;
	int rc;

	if (!path || !*path) {
		print_message("KESTREL_TEST_VMLINUX not set: skipping the real-vmlinux test\n");
		skip();
	}
	assert_int_equal(gm_init(&gm, MiB(512), GM_NO_THP), 0);
	f->cfg.kernel_path = path;
	f->cfg.cmdline = "console=ttyS0";
	rc = boot_load(&gm, &f->cfg, &f->out, f->err, sizeof(f->err));
	if (rc)
		fail_msg("boot_load(%s): %d: %s", path, rc, f->err);
	assert_int_equal(f->out.kind, BOOT_KERNEL_ELF_PVH);
	assert_int_equal(f->out.mode, BOOT_MODE_PVH32);
	assert_true(f->out.rip >= MiB(1) && f->out.rip < f->out.kernel_end);
	si = gm_ptr(&gm, LAYOUT_PVH_INFO_ADDR, 56);
	assert_int_equal(ti_r32(si), 0x336ec578);
	print_message("real vmlinux: PVH entry 0x%llx, loaded up to 0x%llx\n",
		      (unsigned long long)f->out.rip, (unsigned long long)f->out.kernel_end);
	gm_exit(&gm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bz_good, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_no_rsdp_no_cmdline, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_old_protocol, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_no_magic, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_truncated, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_not_64bit, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_not_loaded_high, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_setup_sects_zero, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_bad_alignment, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_cmdline_too_long, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_initrd_placement, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_initrd_too_big, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_ram_too_small, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bz_initrd_file, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_elf_pvh, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_elf_pvh_no_initrd, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_elf_bss_fresh_ram, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_elf64_virtual_entry, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_elf64_physical_entry, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_elf_pvh_note_in_section, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_elf_malformed, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_elf_entry_checks, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_elf_bad_notes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_load_files, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_load_too_big, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bad_args, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_e820, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_real_bzimage, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_real_vmlinux, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
