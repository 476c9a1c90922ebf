/* src/util: byte-order loads and stores, the Internet checksum. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/bytes.h"
#include "util/csum.h"

static void test_bytes(void **state)
{
	uint8_t b[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };
	uint8_t o[9];

	(void)state;
	assert_int_equal(ld16le(b), 0x0201);
	assert_int_equal(ld32le(b), 0x04030201);
	assert_true(ld64le(b) == 0x0807060504030201ull);
	assert_int_equal(ld16be(b), 0x0102);
	assert_int_equal(ld32be(b), 0x01020304);
	/* Unaligned, and stores touch exactly their bytes. */
	memset(o, 0xee, sizeof(o));
	st16le(o + 1, 0xa1b2);
	assert_int_equal(o[1], 0xb2);
	assert_int_equal(o[2], 0xa1);
	assert_int_equal(o[0], 0xee);
	assert_int_equal(o[3], 0xee);
	st32be(o + 1, 0x11223344);
	assert_memory_equal(o + 1, "\x11\x22\x33\x44", 4);
	st16be(o + 5, 0x5566);
	assert_memory_equal(o + 5, "\x55\x66", 2);
	assert_int_equal(o[7], 0xee);
	st64le(o, 0x0807060504030201ull);
	assert_memory_equal(o, b, 8);
	assert_int_equal(o[8], 0xee);
	st32le(o + 1, 0xdeadbeef);
	assert_int_equal(ld32le(o + 1), 0xdeadbeef);
}

static void test_csum(void **state)
{
	/* RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2. */
	static const uint8_t rfc[] = { 0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7 };
	/* An IPv4 header with its checksum (0xb861) in place: the sum folds to 0xffff. */
	static const uint8_t ip[] = { 0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
				      0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7 };

	(void)state;
	assert_int_equal(csum_fold(csum_add(0, rfc, sizeof(rfc), 0)), 0xddf2);
	assert_int_equal(csum_fold(csum_add(0, ip, sizeof(ip), 0)), 0xffff);
	/* Summed in pieces split at odd offsets: the same result. */
	uint64_t s = csum_add(0, rfc, 3, 0);

	s = csum_add(s, rfc + 3, 4, 3);
	s = csum_add(s, rfc + 7, 1, 7);
	assert_int_equal(csum_fold(s), 0xddf2);
	/* An odd length pads with a zero byte: 00 01 f2 is 0x0001 + 0xf200. */
	assert_int_equal(csum_fold(csum_add(0, rfc, 3, 0)), 0xf201);
	/* Carries fold back in: ff ff ff ff is 0x1fffe, folded 0xffff. */
	assert_int_equal(csum_fold(csum_add(0, (const uint8_t *)"\xff\xff\xff\xff", 4, 0)), 0xffff);
	assert_int_equal(csum_fold(csum_add(0, NULL, 0, 0)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bytes),
		cmocka_unit_test(test_csum),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
