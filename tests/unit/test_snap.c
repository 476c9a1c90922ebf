/*
 * The snapshot state file: round trip, and every kind of damage refused before
 * use. The memory file (memfile.c): its binding to the state file, the digest,
 * the commit of the pair and what an interrupted one leaves behind.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapshot/memfile.h"
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

/* ---- the memory file ---------------------------------------------------- */

#define RAM (64 * 4096ull)

static char tdir[64];

static int tdir_setup(void **state)
{
	snprintf(tdir, sizeof(tdir), "/tmp/kestrel-test-memfile-XXXXXX");
	assert_non_null(mkdtemp(tdir));
	return 0;
}

static int tdir_teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tdir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static const char *tpath(char *buf, const char *name)
{
	snprintf(buf, PATH_MAX, "%s/%s", tdir, name);
	return buf;
}

/* Guest RAM with a few non-zero pages, different for each seed. */
static void fill_ram(uint8_t *ram, unsigned seed)
{
	static const unsigned pages[] = { 0, 1, 5, 6, 40, 63 };

	memset(ram, 0, RAM);
	for (unsigned i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		memset(ram + pages[i] * 4096 + 16 * i, (int)(seed * 16 + i + 1), 100);
}

enum { COMMIT, CRASH_AFTER_STATE_RENAME, CRASH_BEFORE_COMMIT };

/* A snapshot pair written the way machine_snapshot() does, stopped where asked. */
static void write_pair(const char *state, const char *mem, const uint8_t *ram, int stop, struct memfile_info *mi)
{
	struct memfile_paths p;
	struct snap_writer w;
	char err[512];
	bool committed;
	int src, out;

	assert_int_equal(memfile_paths_init(&p, state, mem, err, sizeof(err)), 0);
	assert_int_equal(memfile_prepare(&p, err, sizeof(err)), 0);
	/* The "memfd": the pages the guest touched (the non-zero ones here) are its data. */
	src = memfd_create("ram", MFD_CLOEXEC);
	assert_true(src >= 0);
	assert_int_equal(ftruncate(src, RAM), 0);
	for (uint64_t o = 0; o < RAM; o += 4096)
		if (memcmp(ram + o, (uint8_t[4096]){ 0 }, 4096))
			assert_int_equal(pwrite(src, ram + o, 4096, (off_t)o), 4096);
	const struct memfile_src s = { .ram = ram, .ram_size = RAM, .fd = src };
	out = open(p.mem_tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(out >= 0);
	assert_int_equal(ftruncate(out, RAM), 0);
	assert_int_equal(memfile_write_full(&s, out), 0);
	*mi = (struct memfile_info){ .kind = MEMFILE_FULL, .complete = true, .id.ram_size = RAM };
	assert_int_equal(memfile_digest(out, RAM, mi->id.digest, &mi->id.data_pages), 0);
	assert_int_equal(memfile_new_gen(mi->id.gen), 0);
	assert_int_equal(memfile_trailer_write(out, &mi->id), 0);
	close(out);
	close(src);
	snap_writer_init(&w);
	snap_begin(&w, "other", 1);
	snap_put_u32(&w, 7);
	snap_end(&w);
	memfile_section_save(&w, mi);
	assert_int_equal(snap_writer_write(&w, p.state_tmp, err, sizeof(err)), 0);
	snap_writer_free(&w);
	if (stop == CRASH_BEFORE_COMMIT)
		return;
	if (stop == CRASH_AFTER_STATE_RENAME) {
		assert_int_equal(rename(p.state_tmp, p.state), 0);
		return;
	}
	assert_int_equal(memfile_commit(&p, &committed, err, sizeof(err)), 0);
	assert_true(committed);
}

/* memfile_check on the files at these paths; err gets the one-line reason. */
static int check(const char *state, const char *mem, unsigned flags, char *err, size_t errlen)
{
	struct snap_reader r;
	struct memfile_info mi;
	int e;

	err[0] = '\0';
	e = snap_reader_open(&r, state, err, errlen);
	if (e)
		return e;
	e = memfile_check(&r, state, mem, flags, &mi, err, errlen);
	snap_reader_free(&r);
	assert_null(strchr(err, '\n'));
	return e;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void test_memfile_pair_roundtrip(void **state)
{
	static uint8_t ram[RAM];
	char s[PATH_MAX], m[PATH_MAX], t[PATH_MAX], msg[1024];
	struct memfile_info mi;
	struct stat st;

	fill_ram(ram, 1);
	write_pair(tpath(s, "a.state"), tpath(m, "a.mem"), ram, COMMIT, &mi);
	assert_int_equal(mi.id.data_pages, 6);
	assert_int_equal(stat(m, &st), 0);
	assert_int_equal(st.st_size, RAM + MEMFILE_TRAILER_LEN);
	/* Sparse: what the guest never touched stays a hole. */
	assert_true((uint64_t)st.st_blocks * 512 < RAM / 2);
	assert_false(exists(tpath(t, "a.mem.tmp")) || exists(tpath(t, "a.state.tmp")));
	/* RAM is at offset 0, as a restore maps it. */
	int fd = open(m, O_RDONLY);
	uint8_t page[4096];
	assert_int_equal(pread(fd, page, sizeof(page), 5 * 4096), 4096);
	assert_memory_equal(page, ram + 5 * 4096, 4096);
	close(fd);
	assert_int_equal(check(s, m, 0, msg, sizeof(msg)), 0);
	assert_int_equal(check(s, m, MEMFILE_CHECK_DIGEST, msg, sizeof(msg)), 0);
	assert_int_equal(memfile_verify(s, m, msg, sizeof(msg)), 0);
	assert_non_null(strstr(msg, "match"));
	assert_non_null(strstr(msg, "6 non-zero pages"));
}

/* The digest is of the content: holes and written zeros alike; any change, or a page moved, shows. */
static void test_memfile_digest_is_of_content(void **state)
{
	static uint8_t ram[RAM];
	uint8_t d1[MEMFILE_DIGEST_LEN], d2[MEMFILE_DIGEST_LEN];
	uint64_t n1, n2;
	int a = memfd_create("a", MFD_CLOEXEC), b = memfd_create("b", MFD_CLOEXEC);

	fill_ram(ram, 2);
	assert_int_equal(pwrite(a, ram, RAM, 0), (ssize_t)RAM);          /* zeros as data */
	assert_int_equal(ftruncate(b, RAM), 0);                            /* zeros as holes */
	for (uint64_t o = 0; o < RAM; o += 4096)
		if (memcmp(ram + o, (uint8_t[4096]){ 0 }, 4096))
			assert_int_equal(pwrite(b, ram + o, 4096, (off_t)o), 4096);
	assert_int_equal(memfile_digest(a, RAM, d1, &n1), 0);
	assert_int_equal(memfile_digest(b, RAM, d2, &n2), 0);
	assert_memory_equal(d1, d2, sizeof(d1));
	assert_int_equal(n1, 6);
	assert_int_equal(n2, 6);
	/* One byte changed. */
	assert_int_equal(pwrite(b, "x", 1, 40 * 4096 + 4000), 1);
	assert_int_equal(memfile_digest(b, RAM, d2, NULL), 0);
	assert_memory_not_equal(d1, d2, sizeof(d1));
	/* The same page content at another page. */
	assert_int_equal(ftruncate(b, 0), 0);
	assert_int_equal(ftruncate(b, RAM), 0);
	assert_int_equal(pwrite(a, (uint8_t[4096]){ 0 }, 4096, 0), 4096);
	assert_int_equal(pwrite(a, ram, 4096, 0), 4096);
	assert_int_equal(pwrite(b, ram, 4096, 2 * 4096), 4096);
	assert_int_equal(ftruncate(a, 0), 0);
	assert_int_equal(pwrite(a, ram, 4096, 3 * 4096), 4096);
	assert_int_equal(ftruncate(a, RAM), 0);
	assert_int_equal(memfile_digest(a, RAM, d1, NULL), 0);
	assert_int_equal(memfile_digest(b, RAM, d2, NULL), 0);
	assert_memory_not_equal(d1, d2, sizeof(d1));
	close(a);
	close(b);
}

/* Two snapshots of same-sized guests: each state file refuses the other's memory file. */
static void test_memfile_other_snapshot_refused(void **state)
{
	static uint8_t ram[RAM];
	char s1[PATH_MAX], m1[PATH_MAX], s2[PATH_MAX], m2[PATH_MAX], err[1024];
	struct memfile_info mi;

	fill_ram(ram, 3);
	write_pair(tpath(s1, "one.state"), tpath(m1, "one.mem"), ram, COMMIT, &mi);
	write_pair(tpath(s2, "two.state"), tpath(m2, "two.mem"), ram, COMMIT, &mi);   /* same content even */
	assert_int_equal(check(s1, m2, MEMFILE_CHECK_RECOVER, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, "belongs to another snapshot"));
	assert_non_null(strstr(err, "two.mem"));
	assert_int_equal(check(s2, m1, 0, err, sizeof(err)), -ESTALE);
	assert_true(memfile_verify(s1, m2, err, sizeof(err)) < 0);
	assert_int_equal(check(s1, m1, 0, err, sizeof(err)), 0);
}

/* A memory file changed after the snapshot: its trailer still matches, its digest does not. */
static void test_memfile_changed_content_refused(void **state)
{
	static uint8_t ram[RAM];
	char s[PATH_MAX], m[PATH_MAX], err[1024];
	struct memfile_info mi;
	int fd;

	fill_ram(ram, 4);
	write_pair(tpath(s, "c.state"), tpath(m, "c.mem"), ram, COMMIT, &mi);
	fd = open(m, O_WRONLY);
	assert_int_equal(pwrite(fd, "\x01", 1, 30 * 4096), 1);   /* a zero page made non-zero */
	close(fd);
	assert_int_equal(check(s, m, 0, err, sizeof(err)), 0);    /* the cheap check cannot see it */
	assert_int_equal(check(s, m, MEMFILE_CHECK_DIGEST, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "content digest differs"));
	assert_int_equal(memfile_verify(s, m, err, sizeof(err)), -EINVAL);
}

/* Wrong size (truncated, extended), no trailer, a damaged trailer. */
static void test_memfile_bad_files_refused(void **state)
{
	static uint8_t ram[RAM];
	char s[PATH_MAX], m[PATH_MAX], err[1024], cmd[2 * PATH_MAX];
	struct memfile_info mi;
	int fd;

	fill_ram(ram, 5);
	write_pair(tpath(s, "d.state"), tpath(m, "d.mem"), ram, COMMIT, &mi);
	assert_int_equal(truncate(m, RAM), 0);
	assert_int_equal(check(s, m, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "is 262144 bytes"));
	assert_int_equal(truncate(m, RAM + MEMFILE_TRAILER_LEN), 0);   /* right size, trailer gone */
	assert_int_equal(check(s, m, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no valid kestrel trailer"));
	write_pair(s, m, ram, COMMIT, &mi);
	fd = open(m, O_WRONLY);
	assert_int_equal(pwrite(fd, "\xff", 1, RAM + 30), 1);         /* a byte of the generation */
	close(fd);
	assert_int_equal(check(s, m, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no valid kestrel trailer"));
	snprintf(cmd, sizeof(cmd), "%s/nope.mem", tdir);
	assert_int_equal(check(s, cmd, 0, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nope.mem: No such file"));
	assert_int_equal(check(s, tdir, 0, err, sizeof(err)), -EISDIR);
	assert_non_null(strstr(err, "is a directory"));
}

/*
 * A crash between the commit's renames: the new state file beside the old
 * memory file, the new one still MEM.tmp. Loading must not run the new state
 * on the old memory; it finishes the rename instead (verify only reports).
 */
static void test_memfile_interrupted_commit_finished(void **state)
{
	static uint8_t ram[RAM];
	char s[PATH_MAX], m[PATH_MAX], t[PATH_MAX], err[1024];
	struct memfile_info old, new;

	fill_ram(ram, 6);
	write_pair(tpath(s, "e.state"), tpath(m, "e.mem"), ram, COMMIT, &old);
	fill_ram(ram, 7);
	write_pair(s, m, ram, CRASH_AFTER_STATE_RENAME, &new);
	assert_true(exists(tpath(t, "e.mem.tmp")));
	assert_int_equal(check(s, m, 0, err, sizeof(err)), -ESTALE);
	assert_non_null(strstr(err, "interrupted"));
	assert_true(memfile_verify(s, m, err, sizeof(err)) < 0);
	assert_true(exists(t));
	assert_int_equal(check(s, m, MEMFILE_CHECK_RECOVER | MEMFILE_CHECK_DIGEST, err, sizeof(err)), 0);
	assert_false(exists(t));
	assert_int_equal(memfile_verify(s, m, err, sizeof(err)), 0);
	/* The same when the first snapshot ever was interrupted (no MEM at all). */
	write_pair(tpath(s, "f.state"), tpath(m, "f.mem"), ram, CRASH_AFTER_STATE_RENAME, &new);
	assert_false(exists(m));
	assert_int_equal(check(s, m, MEMFILE_CHECK_RECOVER, err, sizeof(err)), 0);
	assert_true(exists(m));
	/* And the next create onto the same pair finishes it first, then replaces it. */
	write_pair(tpath(s, "g.state"), tpath(m, "g.mem"), ram, COMMIT, &old);
	write_pair(s, m, ram, CRASH_AFTER_STATE_RENAME, &new);
	struct memfile_paths p;
	assert_int_equal(memfile_paths_init(&p, s, m, err, sizeof(err)), 0);
	assert_int_equal(memfile_prepare(&p, err, sizeof(err)), 0);
	assert_false(exists(p.mem_tmp));
	assert_int_equal(check(s, m, MEMFILE_CHECK_DIGEST, err, sizeof(err)), 0);
}

/* A crash before the commit: the previous pair is untouched, the temporaries go on the next create. */
static void test_memfile_uncommitted_create_discarded(void **state)
{
	static uint8_t ram[RAM];
	char s[PATH_MAX], m[PATH_MAX], err[1024];
	struct memfile_info old, new;
	struct memfile_paths p;

	fill_ram(ram, 8);
	write_pair(tpath(s, "h.state"), tpath(m, "h.mem"), ram, COMMIT, &old);
	fill_ram(ram, 9);
	write_pair(s, m, ram, CRASH_BEFORE_COMMIT, &new);
	assert_int_equal(memfile_paths_init(&p, s, m, err, sizeof(err)), 0);
	assert_true(exists(p.mem_tmp) && exists(p.state_tmp));
	assert_int_equal(check(s, m, MEMFILE_CHECK_RECOVER | MEMFILE_CHECK_DIGEST, err, sizeof(err)), 0);
	assert_true(exists(p.mem_tmp));    /* a load leaves another create's garbage alone */
	assert_int_equal(memfile_prepare(&p, err, sizeof(err)), 0);
	assert_false(exists(p.mem_tmp) || exists(p.state_tmp));
	assert_int_equal(check(s, m, MEMFILE_CHECK_DIGEST, err, sizeof(err)), 0);
}

/* The two paths must name two files, and neither the other's temporary. */
static void test_memfile_paths_compare_files(void **state)
{
	struct memfile_paths p;
	char a[PATH_MAX], b[PATH_MAX], cwd[PATH_MAX], err[1024];

	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(tdir), 0);
	assert_int_equal(memfile_paths_init(&p, "x", "./x", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "same file"));
	assert_int_equal(memfile_paths_init(&p, "x", "x.tmp", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "temporary"));
	assert_int_equal(memfile_paths_init(&p, "y.tmp", "y", err, sizeof(err)), -EINVAL);
	assert_int_equal(mkdir("sub", 0700), 0);
	assert_int_equal(memfile_paths_init(&p, "sub/../x", "x", err, sizeof(err)), -EINVAL);
	assert_int_equal(symlink(".", "link"), 0);
	assert_int_equal(memfile_paths_init(&p, "link/x", "x", err, sizeof(err)), -EINVAL);
	/* Hard links: two names, one file. */
	assert_int_equal(close(open("h1", O_CREAT | O_WRONLY, 0600)), 0);
	assert_int_equal(link("h1", "h2"), 0);
	assert_int_equal(memfile_paths_init(&p, "h1", "h2", err, sizeof(err)), -EINVAL);
	assert_int_equal(memfile_paths_init(&p, "x", "sub/x", err, sizeof(err)), 0);
	assert_string_equal(p.state, tpath(a, "x"));
	assert_string_equal(p.mem_tmp, tpath(b, "sub/x.tmp"));
	assert_int_equal(memfile_paths_init(&p, "no/such/dir.state", "x", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "no/such/dir.state"));
	assert_int_equal(memfile_paths_init(&p, "x", "sub/", err, sizeof(err)), -EISDIR);
	assert_int_equal(chdir(cwd), 0);
}

/* The memory section: an old unbound one, an incomplete Diff, malformed values. */
static void test_memfile_section_refusals(void **state)
{
	struct snap_writer w;
	struct snap_reader r;
	struct memfile_info mi = { .kind = MEMFILE_DIFF, .complete = false, .id.ram_size = RAM };
	char s[PATH_MAX], m[PATH_MAX], err[1024];
	static uint8_t ram[RAM];

	snap_writer_init(&w);
	snap_begin(&w, "memory", 1);
	snap_put_u64(&w, RAM);
	snap_put_u32(&w, 0);
	snap_end(&w);
	assert_int_equal(open_w(&w, &r), 0);
	assert_int_equal(memfile_section_load(&r, &mi, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "version 1"));
	snap_reader_free(&r);
	snap_writer_free(&w);
	/* A Diff written onto a new file is only the changed pages: never loaded. */
	fill_ram(ram, 10);
	write_pair(tpath(s, "i.state"), tpath(m, "i.mem"), ram, COMMIT, &mi);
	mi.kind = MEMFILE_DIFF;
	mi.complete = false;
	snap_writer_init(&w);
	memfile_section_save(&w, &mi);
	assert_int_equal(snap_writer_save(&w, s, err, sizeof(err)), 0);
	snap_writer_free(&w);
	assert_int_equal(check(s, m, 0, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "cannot be loaded"));
	/* Malformed: a Full that says incomplete, RAM not in pages, too many pages, bad kind. */
	for (int bad = 0; bad < 4; bad++) {
		struct memfile_info b = mi;

		b.kind = bad == 0 ? MEMFILE_FULL : bad == 3 ? 7 : MEMFILE_DIFF;
		b.id.ram_size = bad == 1 ? RAM + 1 : RAM;
		b.id.data_pages = bad == 2 ? RAM / 4096 + 1 : 1;
		snap_writer_init(&w);
		memfile_section_save(&w, &b);
		assert_int_equal(open_w(&w, &r), 0);
		assert_int_equal(memfile_section_load(&r, &b, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "malformed"));
		snap_reader_free(&r);
		snap_writer_free(&w);
	}
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
		cmocka_unit_test_setup_teardown(test_memfile_pair_roundtrip, tdir_setup, tdir_teardown),
		cmocka_unit_test(test_memfile_digest_is_of_content),
		cmocka_unit_test_setup_teardown(test_memfile_other_snapshot_refused, tdir_setup, tdir_teardown),
		cmocka_unit_test_setup_teardown(test_memfile_changed_content_refused, tdir_setup, tdir_teardown),
		cmocka_unit_test_setup_teardown(test_memfile_bad_files_refused, tdir_setup, tdir_teardown),
		cmocka_unit_test_setup_teardown(test_memfile_interrupted_commit_finished, tdir_setup, tdir_teardown),
		cmocka_unit_test_setup_teardown(test_memfile_uncommitted_create_discarded, tdir_setup, tdir_teardown),
		cmocka_unit_test_setup_teardown(test_memfile_paths_compare_files, tdir_setup, tdir_teardown),
		cmocka_unit_test_setup_teardown(test_memfile_section_refusals, tdir_setup, tdir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
