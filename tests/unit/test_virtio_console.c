/* virtio-console input: buffered until the device is attached to a loop, moved to the guest on that loop. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/chardev.h"
#include "devices/virtio/console.h"
#include "loop/loop.h"
#include "util/log.h"
#include "vring_driver.h"

#define RXQ 0

struct fx {
	struct vrd rx;
	struct virtio_console c;
	struct chardev out;
	struct loop *l;
	int drained;
};

static void fx_drained(void *opaque)
{
	((struct fx *)opaque)->drained++;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[64];

	log_set_level(LOG_ERROR);
	assert_int_equal(vrd_init(&f->rx, 16), 0);
	assert_int_equal(chardev_open(&f->out, "none", err, sizeof(err)), 0);
	vcon_init(&f->c, &f->rx.gm, &f->out);
	/* What a transport and a driver do: the receive queue live, DRIVER_OK. */
	assert_int_equal(vrd_setup_vq(&f->rx, &f->c.vdev.queues[RXQ], false, false), 0);
	f->c.vdev.status = VIRTIO_STATUS_DRIVER_OK;
	f->c.rx_drained = fx_drained;
	f->c.rx_opaque = f;
	f->l = loop_new();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	vcon_exit(&f->c);
	loop_free(f->l);
	vrd_exit(&f->rx);
	free(f);
	return 0;
}

/* One 64-byte receive buffer posted by the driver. */
static uint64_t post_buf(struct fx *f)
{
	struct vrd_buf b = vrd_buf_data(&f->rx, NULL, 64, true);

	vrd_publish(&f->rx, vrd_add_chain(&f->rx, &b, 1));
	return b.gpa;
}

static void test_input_before_attach(void **state)
{
	struct fx *f = *state;
	uint64_t gpa = post_buf(f);
	uint32_t id, len;

	/* No loop yet: input is kept, nothing reaches the guest. */
	assert_int_equal(vcon_receive(&f->c, (const uint8_t *)"hi", 2), 2);
	assert_false(vrd_get_used(&f->rx, &id, &len));
	/* Attached: the loop's first round delivers it. */
	assert_int_equal(vcon_attach(&f->c, f->l), 0);
	assert_int_equal(vcon_attach(&f->c, f->l), -EBUSY);
	assert_true(loop_run_once(f->l, 100) >= 1);
	assert_true(vrd_get_used(&f->rx, &id, &len));
	assert_int_equal(len, 2);
	assert_memory_equal(vrd_host(&f->rx, gpa, 2), "hi", 2);
	assert_int_equal(f->drained, 1);
}

static void *feed(void *arg)
{
	struct fx *f = arg;

	usleep(10000);
	assert_int_equal(vcon_receive(&f->c, (const uint8_t *)"abc", 3), 3);
	return NULL;
}

static void test_input_from_other_thread(void **state)
{
	struct fx *f = *state;
	uint64_t gpa = post_buf(f);
	uint32_t id, len;
	pthread_t th;
	bool got = false;

	assert_int_equal(vcon_attach(&f->c, f->l), 0);
	while (loop_run_once(f->l, 0) > 0)
		;
	assert_int_equal(pthread_create(&th, NULL, feed, f), 0);
	/* The loop sleeps until the input thread's post wakes it. */
	for (int i = 0; i < 20 && !(got = vrd_get_used(&f->rx, &id, &len)); i++)
		loop_run_once(f->l, 100);
	pthread_join(th, NULL);
	assert_true(got);
	assert_int_equal(len, 3);
	assert_memory_equal(vrd_host(&f->rx, gpa, 3), "abc", 3);

	/* Detached: input waits in the device again, the loop has nothing to do. */
	vcon_detach(&f->c);
	post_buf(f);
	assert_int_equal(vcon_receive(&f->c, (const uint8_t *)"z", 1), 1);
	assert_int_equal(loop_run_once(f->l, 20), 0);
	assert_false(vrd_get_used(&f->rx, &id, &len));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_input_before_attach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_input_from_other_thread, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
