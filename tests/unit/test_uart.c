#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "devices/legacy/uart.h"

/* A chardev that records output and an irq that records its level. */
struct capture {
	struct chardev cd;
	uint8_t out[256];
	size_t len;
};

static void capture_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	struct capture *c = (struct capture *)cd;

	for (size_t i = 0; i < len && c->len < sizeof(c->out); i++)
		c->out[c->len++] = buf[i];
}

static const struct chardev_ops capture_ops = { .write = capture_write };

static void fake_irq_set(struct irq *irq, bool level)
{
	(void)irq;
	(void)level;
}

static const struct irq_ops fake_irq_ops = { .set_level = fake_irq_set };

struct fixture {
	struct uart u;
	struct capture cap;
	struct irq irq;
	unsigned drained;
};

static void on_drained(void *opaque)
{
	((struct fixture *)opaque)->drained++;
}

static uint8_t rd(struct fixture *f, unsigned reg)
{
	return (uint8_t)uart_ops.read(&f->u, reg, 1);
}

static void wr(struct fixture *f, unsigned reg, uint8_t v)
{
	uart_ops.write(&f->u, reg, v, 1);
}

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	f.cap.cd.ops = &capture_ops;
	f.irq.ops = &fake_irq_ops;
	uart_init(&f.u, &f.irq, &f.cap.cd);
	f.u.rx_drained = on_drained;
	f.u.rx_opaque = &f;
	*state = &f;
	return 0;
}

static void test_reset_state(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd(f, 5), 0x60);          /* LSR: THRE | TEMT */
	assert_int_equal(rd(f, 2), 0x01);          /* IIR: nothing pending, FIFO off */
	assert_int_equal(rd(f, 6) & 0xf0, 0xb0);   /* MSR: DCD DSR CTS */
	assert_false(f->irq.level);
}

static void test_transmit(void **state)
{
	struct fixture *f = *state;

	wr(f, 0, 'h');
	wr(f, 0, 'i');
	assert_int_equal(f->cap.len, 2);
	assert_memory_equal(f->cap.out, "hi", 2);
	assert_int_equal(f->u.tx_bytes, 2);
	assert_int_equal(rd(f, 5) & 0x60, 0x60);
}

static void test_divisor_latch(void **state)
{
	struct fixture *f = *state;

	wr(f, 3, 0x83);           /* DLAB, 8N1 */
	wr(f, 0, 0x01);           /* 115200 baud */
	wr(f, 1, 0x00);
	assert_int_equal(rd(f, 0), 0x01);
	assert_int_equal(rd(f, 1), 0x00);
	assert_int_equal(f->cap.len, 0);  /* DLL writes are not data */
	wr(f, 3, 0x03);
	assert_int_equal(rd(f, 3), 0x03);
	wr(f, 1, 0x00);
	assert_int_equal(rd(f, 1), 0x00);
}

static void test_scratch(void **state)
{
	struct fixture *f = *state;

	wr(f, 7, 0x5a);
	assert_int_equal(rd(f, 7), 0x5a);
}

static void test_receive_non_fifo(void **state)
{
	struct fixture *f = *state;
	const uint8_t in[] = "ab";

	/* Without FIFO there is one holding register. */
	assert_int_equal(uart_receive(&f->u, in, 2), 1);
	assert_int_equal(rd(f, 5) & 0x01, 0x01);
	assert_int_equal(rd(f, 0), 'a');
	assert_int_equal(rd(f, 5) & 0x01, 0x00);
	assert_int_equal(f->drained, 1);
}

static void test_fifo_trigger_and_irq(void **state)
{
	struct fixture *f = *state;
	uint8_t in[20];

	for (int i = 0; i < 20; i++)
		in[i] = (uint8_t)('A' + i);
	wr(f, 2, 0xc7);           /* FIFO on, clear, trigger 14 */
	wr(f, 4, 0x08);           /* OUT2: interrupts reach the PIC */
	wr(f, 1, 0x01);           /* RX interrupt */
	assert_int_equal(rd(f, 2), 0xc1);
	assert_int_equal(uart_receive(&f->u, in, 20), 16);   /* FIFO holds 16 */
	assert_true(f->irq.level);
	assert_int_equal(rd(f, 2), 0xc4);                    /* at/over trigger: RDI */
	for (int i = 0; i < 10; i++)
		assert_int_equal(rd(f, 0), 'A' + i);
	assert_int_equal(rd(f, 2), 0xcc);                    /* below trigger: timeout */
	for (int i = 10; i < 16; i++)
		assert_int_equal(rd(f, 0), 'A' + i);
	assert_int_equal(rd(f, 2), 0xc1);
	assert_false(f->irq.level);
	assert_int_equal(f->drained, 1);
	assert_int_equal(f->u.overruns, 0);
}

static void test_out2_gates_irq(void **state)
{
	struct fixture *f = *state;
	const uint8_t c = 'x';

	wr(f, 1, 0x01);
	uart_receive(&f->u, &c, 1);
	assert_int_equal(rd(f, 2), 0x04);
	assert_false(f->irq.level);   /* MCR.OUT2 clear: line stays low */
	wr(f, 4, 0x08);
	assert_true(f->irq.level);
	rd(f, 0);
	assert_false(f->irq.level);
}

static void test_thre_interrupt(void **state)
{
	struct fixture *f = *state;

	wr(f, 4, 0x08);
	wr(f, 1, 0x02);                      /* enabling THRI with THR empty fires */
	assert_true(f->irq.level);
	assert_int_equal(rd(f, 2), 0x02);    /* reading IIR acknowledges it */
	assert_false(f->irq.level);
	assert_int_equal(rd(f, 2), 0x01);
	wr(f, 0, 'z');                       /* a transmit makes THR empty again */
	assert_true(f->irq.level);
}

static void test_loopback(void **state)
{
	struct fixture *f = *state;
	const uint8_t c = 'q';

	/* Linux's 8250 probe: MCR = LOOP | OUT2 | RTS must read MSR 0x90. */
	wr(f, 4, 0x1a);
	assert_int_equal(rd(f, 6) & 0xf0, 0x90);
	wr(f, 0, 0x55);
	assert_int_equal(f->cap.len, 0);          /* nothing leaves in loopback */
	assert_int_equal(rd(f, 5) & 0x01, 0x01);
	assert_int_equal(rd(f, 0), 0x55);
	assert_int_equal(uart_receive(&f->u, &c, 1), 0);  /* line disconnected */
	wr(f, 4, 0x00);
	assert_int_equal(rd(f, 6) & 0xf0, 0xb0);
}

static void test_overrun(void **state)
{
	struct fixture *f = *state;

	wr(f, 4, 0x10);      /* loopback lets the guest overrun itself */
	wr(f, 0, 1);
	wr(f, 0, 2);         /* holding register full: overrun */
	assert_int_equal(rd(f, 5) & 0x02, 0x02);
	assert_int_equal(rd(f, 5) & 0x02, 0x00);  /* OE clears on read */
	assert_int_equal(f->u.overruns, 1);
	assert_int_equal(rd(f, 0), 1);
}

static void test_hostile_offsets(void **state)
{
	struct fixture *f = *state;

	/* Offsets outside the 8 registers (cannot come from the bus) read 0, write nothing. */
	assert_int_equal(uart_ops.read(&f->u, 9, 1), 0);
	uart_ops.write(&f->u, 100, 0xff, 1);
	assert_int_equal(f->cap.len, 0);
	/* LSR/MSR writes are ignored. */
	wr(f, 5, 0x00);
	assert_int_equal(rd(f, 5) & 0x60, 0x60);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_reset_state, setup),
		cmocka_unit_test_setup(test_transmit, setup),
		cmocka_unit_test_setup(test_divisor_latch, setup),
		cmocka_unit_test_setup(test_scratch, setup),
		cmocka_unit_test_setup(test_receive_non_fifo, setup),
		cmocka_unit_test_setup(test_fifo_trigger_and_irq, setup),
		cmocka_unit_test_setup(test_out2_gates_irq, setup),
		cmocka_unit_test_setup(test_thre_interrupt, setup),
		cmocka_unit_test_setup(test_loopback, setup),
		cmocka_unit_test_setup(test_overrun, setup),
		cmocka_unit_test_setup(test_hostile_offsets, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
