/* The chardev's input side: reading on a loop, back-pressure from the device, Ctrl-A escapes, EOF. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/chardev.h"
#include "loop/loop.h"
#include "util/log.h"

struct sink {
	uint8_t got[256];
	size_t len;
	size_t room;              /* bytes the fake device takes before it is full */
	int quits;
};

static size_t sink_rx(void *opaque, const uint8_t *buf, size_t len)
{
	struct sink *s = opaque;
	size_t n = len < s->room ? len : s->room;

	memcpy(s->got + s->len, buf, n);
	s->len += n;
	s->room -= n;
	return n;
}

static void sink_quit(void *opaque)
{
	((struct sink *)opaque)->quits++;
}

struct fx {
	struct chardev cd;
	struct loop *l;
	struct sink s;
	int wr;
};

static int setup(void **state)
{
	static struct fx f;
	char err[128];
	int p[2];
	struct chardev_input in;

	memset(&f, 0, sizeof(f));
	log_set_level(LOG_ERROR);
	assert_int_equal(chardev_open(&f.cd, "none", err, sizeof(err)), 0);
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	f.cd.in_fd = p[0];
	f.wr = p[1];
	f.l = loop_new();
	f.s.room = sizeof(f.s.got);
	in = (struct chardev_input){ .rx = sink_rx, .rx_opaque = &f.s, .quit = sink_quit, .quit_opaque = &f.s };
	assert_int_equal(chardev_attach(&f.cd, f.l, &in), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int in = f->cd.in_fd;

	chardev_close(&f->cd);
	loop_free(f->l);
	close(in);
	if (f->wr >= 0)
		close(f->wr);
	return 0;
}

static void put(struct fx *f, const char *s, size_t len)
{
	assert_int_equal(write(f->wr, s, len), (ssize_t)len);
}

static void test_input_reaches_device(void **state)
{
	struct fx *f = *state;

	put(f, "hello", 5);
	assert_int_equal(loop_run_once(f->l, 100), 1);
	assert_int_equal(f->s.len, 5);
	assert_memory_equal(f->s.got, "hello", 5);
	assert_int_equal(f->cd.bytes_in, 5);
	/* Not a raw terminal: Ctrl-A is just a byte. */
	put(f, "\x01x", 2);
	loop_run_once(f->l, 100);
	assert_int_equal(f->s.len, 7);
	assert_memory_equal(f->s.got + 5, "\x01x", 2);
	assert_int_equal(f->s.quits, 0);
}

static void *drain_later(void *arg)
{
	struct fx *f = arg;

	usleep(20000);
	f->s.room = 100;
	chardev_rx_drained(&f->cd);
	return NULL;
}

static void test_backpressure(void **state)
{
	struct fx *f = *state;
	pthread_t th;

	f->s.room = 2;
	put(f, "abcd", 4);
	loop_run_once(f->l, 100);
	assert_int_equal(f->s.len, 2);
	/* The device is full: more input stays in the pipe, the loop sleeps. */
	put(f, "ef", 2);
	assert_int_equal(loop_run_once(f->l, 30), 0);
	assert_int_equal(f->s.len, 2);
	/* The device drains on another thread: the rest arrives in order. */
	assert_int_equal(pthread_create(&th, NULL, drain_later, f), 0);
	for (int i = 0; i < 20 && f->s.len < 6; i++)
		loop_run_once(f->l, 100);
	pthread_join(th, NULL);
	assert_int_equal(f->s.len, 6);
	assert_memory_equal(f->s.got, "abcdef", 6);
}

static void test_escapes(void **state)
{
	struct fx *f = *state;

	/* What chardev_tty_raw() sets when stdin is a terminal. */
	f->cd.raw_tty = true;
	/* Ctrl-A Ctrl-A: one Ctrl-A; Ctrl-A q: swallowed; Ctrl-A x: quit, the rest dropped. */
	put(f, "a\x01\x01" "b\x01q" "c\x01xzz", 10);
	loop_run_once(f->l, 100);
	assert_int_equal(f->s.len, 4);
	assert_memory_equal(f->s.got, "a\x01" "bc", 4);
	assert_int_equal(f->s.quits, 1);
	/* An escape split across reads still works. */
	put(f, "\x01", 1);
	loop_run_once(f->l, 100);
	put(f, "X", 1);
	loop_run_once(f->l, 100);
	assert_int_equal(f->s.quits, 2);
	assert_int_equal(f->s.len, 4);
	f->cd.raw_tty = false;   /* not a real terminal: nothing to restore */
}

static void test_eof(void **state)
{
	struct fx *f = *state;

	put(f, "z", 1);
	close(f->wr);
	f->wr = -1;
	for (int i = 0; i < 5; i++)
		loop_run_once(f->l, 50);
	assert_int_equal(f->s.len, 1);
	/* EOF: the input fd is no longer polled (it would be readable for ever). */
	assert_false(f->cd.in_registered);
	assert_int_equal(loop_run_once(f->l, 20), 0);
}

static void test_bad_attach(void **state)
{
	struct chardev cd;
	struct chardev_input none = { .rx = NULL };
	struct loop *l = loop_new();
	char err[128];

	(void)state;
	assert_int_equal(chardev_open(&cd, "bogus", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "bogus"));
	assert_int_equal(chardev_open(&cd, "none", err, sizeof(err)), 0);
	assert_int_equal(chardev_attach(&cd, l, &none), -EINVAL);
	assert_int_equal(chardev_attach(&cd, l, NULL), -EINVAL);
	/* No input fd: attaching polls nothing; a second attach is refused. */
	none.rx = sink_rx;
	assert_int_equal(chardev_attach(&cd, l, &none), 0);
	assert_false(cd.in_registered);
	assert_int_equal(chardev_attach(&cd, l, &none), -EBUSY);
	chardev_rx_drained(&cd);
	chardev_close(&cd);
	/* Input from something epoll cannot watch (/dev/null): attached, reading nothing. */
	assert_int_equal(chardev_open(&cd, "none", err, sizeof(err)), 0);
	cd.in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(cd.in_fd >= 0);
	int devnull = cd.in_fd;

	assert_int_equal(chardev_attach(&cd, l, &none), 0);
	assert_false(cd.in_registered);
	assert_int_equal(loop_run_once(l, 0), 0);
	chardev_close(&cd);
	close(devnull);
	loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_input_reaches_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_escapes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof, setup, teardown),
		cmocka_unit_test(test_bad_attach),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
