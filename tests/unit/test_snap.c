/* The snapshot state file: round trip, and every kind of damage refused before use. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapshot/snap.h"
#include "util/crc32.h"

static void build(struct snap_writer *w)
{
	static const uint8_t blob[300] = { 1, 2, 3, [299] = 9 };

	snap_writer_init(w);
	snap_begin(w, "first", 3);
	snap_put_u8(w, 0xab);
	snap_put_u16(w, 0xbeef);
	snap_put_u32(w, 0xdeadbeef);
	snap_put_u64(w, 0x0123456789abcdefull);
	snap_put_bool(w, true);
	snap_put_str(w, "hello");
	snap_put_str(w, NULL);
	snap_end(w);
	snap_begin(w, "second", 1);
	snap_put(w, blob, sizeof(blob));
	snap_end(w);
	snap_begin(w, "empty", 7);
	snap_end(w);
}

static int open_w(struct snap_writer *w, struct snap_reader *r)
{
	char path[] = "/tmp/kestrel-test-snap-XXXXXX", err[256];
	int fd = mkstemp(path), e;

	assert_true(fd >= 0);
	close(fd);
	e = snap_writer_save(w, path, err, sizeof(err));
	assert_int_equal(e, 0);
	e = snap_reader_open(r, path, err, sizeof(err));
	unlink(path);
	return e;
}

static void test_roundtrip(void **state)
{
	struct snap_writer w;
	struct snap_reader r;
	struct snap_sec s;
	char str[16];
	uint8_t blob[300];
	bool null;

	build(&w);
	assert_int_equal(open_w(&w, &r), 0);
	assert_int_equal(r.nsections, 3);
	assert_int_equal(snap_find(&r, "first", &s), 0);
	assert_int_equal(s.version, 3);
	assert_int_equal(snap_get_u8(&s), 0xab);
	assert_int_equal(snap_get_u16(&s), 0xbeef);
	assert_int_equal(snap_get_u32(&s), 0xdeadbeef);
	assert_true(snap_get_u64(&s) == 0x0123456789abcdefull);
	assert_true(snap_get_bool(&s));
	assert_int_equal(snap_get_str(&s, str, sizeof(str), &null), 0);
	assert_string_equal(str, "hello");
	assert_false(null);
	assert_int_equal(snap_get_str(&s, str, sizeof(str), &null), 0);
	assert_true(null);
	assert_int_equal(snap_sec_end(&s), 0);
	assert_int_equal(snap_find(&r, "second", &s), 0);
	assert_int_equal(snap_get(&s, blob, sizeof(blob)), 0);
	assert_int_equal(blob[299], 9);
	assert_int_equal(snap_sec_end(&s), 0);
	assert_int_equal(snap_find(&r, "empty", &s), 0);
	assert_int_equal(s.len, 0);
	assert_int_equal(snap_find(&r, "missing", &s), -ENOENT);
	snap_reader_free(&r);
	snap_writer_free(&w);
}

static void test_reads_past_end_flagged(void **state)
{
	struct snap_writer w;
	struct snap_reader r;
	struct snap_sec s;
	char small[3];
	char err[128];

	build(&w);
	assert_int_equal(open_w(&w, &r), 0);
	assert_int_equal(snap_find(&r, "empty", &s), 0);
	assert_int_equal(snap_get_u32(&s), 0);
	assert_true(s.err);
	assert_int_equal(snap_sec_end(&s), -EINVAL);
	/* Leftover bytes are an error too. */
	assert_int_equal(snap_find(&r, "first", &s), 0);
	(void)snap_get_u8(&s);
	assert_int_equal(snap_sec_end(&s), -EINVAL);
	/* A string longer than the destination is refused, not truncated. */
	assert_int_equal(snap_find(&r, "first", &s), 0);
	s.off = 1 + 2 + 4 + 8 + 1;
	assert_int_equal(snap_get_str(&s, small, sizeof(small), NULL), -EINVAL);
	assert_true(s.err);
	snap_reader_free(&r);
	snap_writer_free(&w);
	(void)err;
}

static uint8_t *save_to_mem(struct snap_writer *w, size_t *len)
{
	char path[] = "/tmp/kestrel-test-snap-XXXXXX", err[256];
	int fd = mkstemp(path);
	uint8_t *buf;
	FILE *f;

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(snap_writer_save(w, path, err, sizeof(err)), 0);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(*len);
	assert_int_equal(fread(buf, 1, *len, f), *len);
	fclose(f);
	unlink(path);
	return buf;
}

static void test_bad_bool(void **state)
{
	struct snap_writer w;
	struct snap_reader r;
	struct snap_sec s;
	char err[128];
	size_t len;
	uint8_t *buf;

	snap_writer_init(&w);
	snap_begin(&w, "b", 1);
	snap_put_u8(&w, 2);
	snap_end(&w);
	buf = save_to_mem(&w, &len);
	assert_int_equal(snap_reader_open_mem(&r, buf, len, err, sizeof(err)), 0);
	assert_int_equal(snap_find(&r, "b", &s), 0);
	(void)snap_get_bool(&s);
	assert_int_equal(snap_sec_end(&s), -EINVAL);
	snap_reader_free(&r);
	free(buf);
	snap_writer_free(&w);
}

static void test_truncation_refused(void **state)
{
	struct snap_writer w;
	struct snap_reader r;
	char err[256];
	size_t len;
	uint8_t *buf;

	build(&w);
	buf = save_to_mem(&w, &len);
	assert_int_equal(snap_reader_open_mem(&r, buf, len, err, sizeof(err)), 0);
	snap_reader_free(&r);
	for (size_t n = 0; n < len; n++) {
		err[0] = '\0';
		assert_int_equal(snap_reader_open_mem(&r, buf, n, err, sizeof(err)), -EINVAL);
		assert_true(strlen(err) > 0);
		assert_null(strchr(err, '\n'));
	}
	free(buf);
	snap_writer_free(&w);
}

static void test_every_bit_flip_refused(void **state)
{
	struct snap_writer w;
	struct snap_reader r;
	char err[256];
	size_t len;
	uint8_t *buf;

	build(&w);
	buf = save_to_mem(&w, &len);
	for (size_t i = 0; i < len; i++)
		for (int b = 0; b < 8; b++) {
			buf[i] ^= (uint8_t)(1 << b);
			assert_int_equal(snap_reader_open_mem(&r, buf, len, err, sizeof(err)), -EINVAL);
			buf[i] ^= (uint8_t)(1 << b);
		}
	free(buf);
	snap_writer_free(&w);
}

static void test_version_and_magic(void **state)
{
	struct snap_writer w;
	struct snap_reader r;
	char err[256];
	size_t len;
	uint8_t *buf;
	uint32_t crc;

	build(&w);
	buf = save_to_mem(&w, &len);
	/* A future format version with a valid header CRC: refused by version, clearly. */
	buf[8] = SNAP_FORMAT_VERSION + 1;
	crc = crc32_update(0, buf, 24);
	memcpy(buf + 24, &crc, 4);
	assert_int_equal(snap_reader_open_mem(&r, buf, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "version"));
	memcpy(buf, "NOTASNAP", 8);
	assert_int_equal(snap_reader_open_mem(&r, buf, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "magic"));
	free(buf);
	snap_writer_free(&w);
	/* Missing file, not a regular file. */
	assert_true(snap_reader_open(&r, "/nonexistent/x", err, sizeof(err)) < 0);
	assert_int_equal(snap_reader_open(&r, "/tmp", err, sizeof(err)), -EINVAL);
}

static void test_crc32_known_value(void **state)
{
	/* The standard check value of CRC-32/ISO-HDLC. */
	assert_int_equal(crc32_update(0, "123456789", 9), 0xcbf43926);
	/* Incremental equals one-shot (slicing path and byte path). */
	static uint8_t data[1000];
	for (unsigned i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(crc32_update(crc32_update(0, data, 13), data + 13, sizeof(data) - 13),
			 crc32_update(0, data, sizeof(data)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_reads_past_end_flagged),
		cmocka_unit_test(test_bad_bool),
		cmocka_unit_test(test_truncation_refused),
		cmocka_unit_test(test_every_bit_flip_refused),
		cmocka_unit_test(test_version_and_magic),
		cmocka_unit_test(test_crc32_known_value),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
