/* util/file: opening user-named paths never blocks, and the type is checked on the descriptor. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/chardev.h"
#include "util/file.h"

struct fx {
	char dir[64];
	char reg[96], fifo[96], link[96];
	char err[256];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	int fd;

	strcpy(f->dir, "/tmp/kestrel-file-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->reg, sizeof(f->reg), "%s/reg", f->dir);
	snprintf(f->fifo, sizeof(f->fifo), "%s/fifo", f->dir);
	snprintf(f->link, sizeof(f->link), "%s/link", f->dir);
	fd = open(f->reg, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "abc", 3), 3);
	close(fd);
	assert_int_equal(mkfifo(f->fifo, 0600), 0);
	assert_int_equal(symlink(f->reg, f->link), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char tmp[128];

	unlink(f->reg);
	unlink(f->fifo);
	unlink(f->link);
	snprintf(tmp, sizeof(tmp), "%s/new", f->dir);
	unlink(tmp);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void test_regular_file_is_blocking_again(void **state)
{
	struct fx *f = *state;
	struct stat st;
	int fd = file_open(f->reg, O_RDONLY, 0, FILE_REG, "kernel", &st, f->err, sizeof(f->err));

	assert_true(fd >= 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_size, 3);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

static void test_fifo_refused_without_blocking(void **state)
{
	struct fx *f = *state;
	char want[256];

	/* No writer: a blocking open would never return. */
	assert_int_equal(file_open(f->fifo, O_RDONLY, 0, FILE_REG, "initrd", NULL, f->err, sizeof(f->err)),
			 -EINVAL);
	snprintf(want, sizeof(want), "initrd %s: is a FIFO (named pipe), not a regular file", f->fifo);
	assert_string_equal(f->err, want);
	/* No reader, write-only: ENXIO from the kernel, still named for what it is. */
	assert_int_equal(file_open(f->fifo, O_WRONLY | O_CREAT, 0600, FILE_REG, "memory file", NULL, f->err,
				   sizeof(f->err)), -EINVAL);
	snprintf(want, sizeof(want), "memory file %s: is a FIFO (named pipe), not a regular file", f->fifo);
	assert_string_equal(f->err, want);
	/* The accepted kinds are listed. */
	assert_int_equal(file_open(f->fifo, O_RDONLY, 0, FILE_REG | FILE_BLK, "disk", NULL, f->err,
				   sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, "not a regular file or block device"));
}

static void test_directory_and_missing(void **state)
{
	struct fx *f = *state;
	char want[256], path[128];

	assert_int_equal(file_open(f->dir, O_RDONLY, 0, FILE_REG, "kernel", NULL, f->err, sizeof(f->err)),
			 -EISDIR);
	snprintf(want, sizeof(want), "kernel %s: is a directory", f->dir);
	assert_string_equal(f->err, want);
	snprintf(path, sizeof(path), "%s/none", f->dir);
	assert_int_equal(file_open(path, O_RDONLY, 0, FILE_REG, "kernel", NULL, f->err, sizeof(f->err)),
			 -ENOENT);
	assert_non_null(strstr(f->err, "No such file"));
	/* A NULL err is allowed (callers that only want the code). */
	assert_int_equal(file_open(path, O_RDONLY, 0, FILE_REG, "kernel", NULL, NULL, 0), -ENOENT);
}

static void test_nofollow(void **state)
{
	struct fx *f = *state;
	int fd;

	assert_int_equal(file_open(f->link, O_RDONLY | O_NOFOLLOW, 0, FILE_REG, "snapshot", NULL, f->err,
				   sizeof(f->err)), -ELOOP);
	assert_non_null(strstr(f->err, "is a symbolic link"));
	fd = file_open(f->link, O_RDONLY, 0, FILE_REG, "kernel", NULL, f->err, sizeof(f->err));
	assert_true(fd >= 0);
	close(fd);
}

static void test_fifo_output_without_reader(void **state)
{
	struct fx *f = *state;
	char big[8192], buf[16];
	struct stat st;
	int fd, rd;
	size_t n, total = 0;

	fd = file_open(f->fifo, O_WRONLY | O_CREAT | O_TRUNC, 0644, FILE_REG | FILE_FIFO, "metrics file", &st,
		       f->err, sizeof(f->err));
	assert_true(fd >= 0);
	assert_true(S_ISFIFO(st.st_mode));
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_int_equal(file_write_nb(fd, "line\n", 5, true), 5);
	/* Fill the pipe: writes come back short instead of blocking. */
	memset(big, 'x', sizeof(big));
	do {
		n = file_write_nb(fd, big, sizeof(big), false);
		total += n;
	} while (n == sizeof(big) && total < (64u << 20));
	assert_true(n < sizeof(big));
	/* A full pipe takes no whole record at all. */
	assert_int_equal(file_write_nb(fd, "{}\n", 3, true), 0);
	/* What was written waits for the reader. */
	rd = open(f->fifo, O_RDONLY | O_NONBLOCK);
	assert_true(rd >= 0);
	assert_int_equal(read(rd, buf, 5), 5);
	assert_memory_equal(buf, "line\n", 5);
	close(rd);
	close(fd);
}

/* A reader present at open that leaves later must not turn writes into SIGPIPE. */
static void test_fifo_reader_leaves(void **state)
{
	struct fx *f = *state;
	int rd, fd;

	rd = open(f->fifo, O_RDONLY | O_NONBLOCK);
	assert_true(rd >= 0);
	fd = file_open(f->fifo, O_WRONLY, 0, FILE_FIFO, "console file", NULL, f->err, sizeof(f->err));
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	close(rd);
	/* Write-only, this would raise SIGPIPE and end the test binary. */
	assert_int_equal(file_write_nb(fd, "after\n", 6, false), 6);
	close(fd);
}

static void test_chardev_limit(void **state)
{
	struct fx *f = *state;
	char spec[160], path[128], buf[256];
	struct chardev cd;
	FILE *in;
	size_t n;

	snprintf(path, sizeof(path), "%s/new", f->dir);
	snprintf(spec, sizeof(spec), "file:%s", path);
	assert_int_equal(chardev_open(&cd, spec, f->err, sizeof(f->err)), 0);
	assert_true(cd.limit == CHARDEV_DEFAULT_LIMIT);
	cd.limit = 10;
	chardev_write(&cd, (const uint8_t *)"0123456", 7);
	chardev_write(&cd, (const uint8_t *)"789abcdef", 9);
	chardev_write(&cd, (const uint8_t *)"ghij", 4);
	assert_true(cd.bytes_out == 10);
	assert_true(cd.bytes_dropped == 10);
	chardev_close(&cd);
	in = fopen(path, "r");
	assert_non_null(in);
	n = fread(buf, 1, sizeof(buf) - 1, in);
	fclose(in);
	buf[n] = '\0';
	/* The first 10 bytes, then the marker line exactly once. */
	assert_string_equal(buf, "0123456789\n[kestrel: console output limit of 10 bytes reached; "
			    "further output dropped]\n");
	/* A FIFO console has no limit and is not waited for. */
	snprintf(spec, sizeof(spec), "file:%s", f->fifo);
	assert_int_equal(chardev_open(&cd, spec, f->err, sizeof(f->err)), 0);
	assert_true(cd.limit == 0 && cd.nonblock);
	chardev_close(&cd);
	/* A directory is refused with a one-line reason. */
	snprintf(spec, sizeof(spec), "file:%s", f->dir);
	assert_true(chardev_open(&cd, spec, f->err, sizeof(f->err)) < 0);
	assert_non_null(strstr(f->err, f->dir));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_regular_file_is_blocking_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_refused_without_blocking, setup, teardown),
		cmocka_unit_test_setup_teardown(test_directory_and_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nofollow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_output_without_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_reader_leaves, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chardev_limit, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
