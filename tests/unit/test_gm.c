#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <cmocka.h>

#include "mem/gm.h"
#include "mem/layout.h"
#include "mem/gm_test.h"

static void test_fake_bounds(void **state)
{
	uint8_t *buf = calloc(1, 4096);
	struct guest_mem gm;
	uint32_t v = 0x11223344;

	gm_init_fake(&gm, 0x10000, buf, 4096);
	assert_non_null(gm_ptr(&gm, 0x10000, 4096));
	assert_null(gm_ptr(&gm, 0x10000, 4097));
	assert_null(gm_ptr(&gm, 0xffff, 2));
	assert_null(gm_ptr(&gm, 0x10fff, 2));
	assert_non_null(gm_ptr(&gm, 0x10fff, 1));
	/* Overflowing ranges are rejected, not wrapped. */
	assert_null(gm_ptr(&gm, ~0ull, 2));
	assert_null(gm_ptr(&gm, 0x10000, ~0ull));
	assert_int_equal(gm_write(&gm, 0x10ffc, &v, 4), 0);
	assert_int_equal(buf[4092], 0x44);
	assert_int_equal(gm_write(&gm, 0x10ffd, &v, 4), -EFAULT);
	v = 0;
	assert_int_equal(gm_read(&gm, 0x10ffc, &v, 4), 0);
	assert_int_equal(v, 0x11223344);
	assert_true(gm_is_ram(&gm, 0x10000, 1));
	assert_false(gm_is_ram(&gm, 0x11000, 1));
	free(buf);
}

static void test_memfd_split_around_hole(void **state)
{
	struct guest_mem gm;
	uint64_t size = LAYOUT_MMIO32_START + (64ull << 20);

	assert_int_equal(gm_init(&gm, size, 0), 0);
	assert_int_equal(gm.nr_regions, 2);
	assert_true(gm.memfd >= 0);
	assert_int_equal(gm_low_ram_end(&gm), LAYOUT_MMIO32_START);
	assert_int_equal(gm.regions[1].gpa, LAYOUT_HIGH_RAM_START);
	assert_int_equal(gm.regions[1].size, 64ull << 20);
	assert_int_equal(gm.regions[1].fd_offset, LAYOUT_MMIO32_START);
	/* The hole is not RAM; both sides are. */
	assert_null(gm_ptr(&gm, LAYOUT_MMIO32_START, 1));
	assert_null(gm_ptr(&gm, LAYOUT_MMIO32_START - 1, 2));
	assert_non_null(gm_ptr(&gm, LAYOUT_MMIO32_START - 1, 1));
	assert_non_null(gm_ptr(&gm, LAYOUT_HIGH_RAM_START + (64ull << 20) - 8, 8));
	assert_null(gm_ptr(&gm, LAYOUT_HIGH_RAM_START + (64ull << 20) - 7, 8));
	gm_exit(&gm);
	assert_int_equal(gm.memfd, -1);
}

static void test_small_and_bad_sizes(void **state)
{
	struct guest_mem gm;

	assert_int_equal(gm_init(&gm, 16ull << 20, 0), 0);
	assert_int_equal(gm.nr_regions, 1);
	assert_int_equal(gm_low_ram_end(&gm), 16ull << 20);
	gm_exit(&gm);
	assert_int_equal(gm_init(&gm, 0, 0), -EINVAL);
	/* hugetlbfs needs whole 2 MiB pages */
	assert_int_equal(gm_init(&gm, (16ull << 20) + 4096, GM_HUGEPAGES), -EINVAL);
}

/* A short huge-page pool fails at creation (ENOMEM), not with SIGBUS at the first touch. */
static void test_hugepages_reserved_up_front(void **state)
{
	uint64_t free_pages, page_kib, size;
	struct guest_mem gm;
	int e;

	if (gm_hugepages_free(&free_pages, &page_kib) < 0 || page_kib != 2048) {
		skip();
		return;
	}
	size = (free_pages + 1) * MiB(2);   /* one page more than the pool has */
	e = gm_init(&gm, size, GM_HUGEPAGES);
	if (e == 0) {
		/* Only if pages were freed meanwhile; then all of them must be there. */
		for (uint64_t off = 0; off < size; off += MiB(2))
			((volatile uint8_t *)gm.mapping)[off] = 1;
		gm_exit(&gm);
		return;
	}
	assert_int_equal(e, -ENOMEM);
}

static void test_ram_beyond_host(void **state)
{
	struct sysinfo si;
	char err[256];

	if (sysinfo(&si) < 0 || ((uint64_t)si.totalram + si.totalswap) * si.mem_unit >= GiB(1024)) {
		skip();   /* a host with 1 TiB or more can give it */
		return;
	}
	assert_int_equal(gm_check_host(GiB(1024), 0, err, sizeof(err)), -ENOMEM);
	assert_non_null(strstr(err, "exceeds this host's memory plus swap"));
	assert_non_null(strstr(err, "--mem-overcommit"));
	assert_int_equal(gm_check_host(GiB(1024), GM_OVERCOMMIT, err, sizeof(err)), 0);
	assert_int_equal(gm_check_host(MiB(64), 0, err, sizeof(err)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fake_bounds),
		cmocka_unit_test(test_memfd_split_around_hole),
		cmocka_unit_test(test_small_and_bad_sizes),
		cmocka_unit_test(test_hugepages_reserved_up_front),
		cmocka_unit_test(test_ram_beyond_host),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
