/* i8042, RTC, ACPI sleep control and the debug-exit port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/rtc.h"

struct events {
	unsigned resets, poweroffs, exits;
	int status;
};

static void record(void *opaque, enum sysevent ev, int status)
{
	struct events *e = opaque;

	if (ev == SYSEVENT_RESET)
		e->resets++;
	else if (ev == SYSEVENT_POWEROFF)
		e->poweroffs++;
	else
		e->exits++;
	e->status = status;
}

static void test_i8042_reset_command(void **state)
{
	struct events ev = { 0 };
	struct sysevent_sink sink = { record, &ev };
	struct i8042 k;

	i8042_init(&k, &sink, NULL);
	assert_int_equal(i8042_ctl_ops.read(&k, 0, 1) & 0x04, 0x04);  /* system flag */
	i8042_ctl_ops.write(&k, 0, 0xfe, 1);
	assert_int_equal(ev.resets, 1);
}

static void test_i8042_commands(void **state)
{
	struct events ev = { 0 };
	struct sysevent_sink sink = { record, &ev };
	struct i8042 k;

	i8042_init(&k, &sink, NULL);
	i8042_ctl_ops.write(&k, 0, 0xaa, 1);                /* self test */
	assert_int_equal(i8042_ctl_ops.read(&k, 0, 1) & 1, 1);  /* OBF */
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0x55);
	assert_int_equal(i8042_ctl_ops.read(&k, 0, 1) & 1, 0);
	i8042_ctl_ops.write(&k, 0, 0x60, 1);                /* write command byte */
	i8042_data_ops.write(&k, 0, 0x30, 1);
	i8042_ctl_ops.write(&k, 0, 0x20, 1);
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0x30);
	/* Output port with bit 0 low is a CPU reset too. */
	i8042_ctl_ops.write(&k, 0, 0xd1, 1);
	i8042_data_ops.write(&k, 0, 0xfe, 1);
	assert_int_equal(ev.resets, 1);
	/* Keyboard bytes and unknown commands do nothing. */
	i8042_data_ops.write(&k, 0, 0xed, 1);
	i8042_ctl_ops.write(&k, 0, 0x12, 1);
	i8042_ctl_ops.write(&k, 0, 0xff, 1);   /* pulse with bit 0 set: no reset line */
	assert_int_equal(ev.resets, 1);
}

static void count_pulse(struct irq *irq, bool level)
{
	if (level)
		(*(unsigned *)irq->opaque)++;
}

static const struct irq_ops count_ops = { .set_level = count_pulse };

static void test_i8042_keyboard(void **state)
{
	struct i8042 k;
	unsigned pulses = 0;
	struct irq irq = { .ops = &count_ops, .opaque = &pulses };
	const uint8_t cad[] = { 0x14, 0x11, 0xe0, 0x71 };

	i8042_init(&k, NULL, &irq);
	/* Linux's keylock check: bit 4 set means not inhibited. */
	assert_int_equal(i8042_ctl_ops.read(&k, 0, 1) & 0x10, 0x10);
	/* Identify: ACK then the MF2 id, each byte raising IRQ 1 when it reaches the buffer. */
	i8042_data_ops.write(&k, 0, 0xf2, 1);
	assert_int_equal(pulses, 1);
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0xfa);
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0xab);
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0x83);
	assert_int_equal(pulses, 3);
	assert_int_equal(i8042_ctl_ops.read(&k, 0, 1) & 1, 0);
	/* Set LEDs takes an argument; both bytes are ACKed. */
	i8042_data_ops.write(&k, 0, 0xed, 1);
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0xfa);
	i8042_data_ops.write(&k, 0, 0x07, 1);
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0xfa);
	/* Reset: ACK + self-test passed. */
	i8042_data_ops.write(&k, 0, 0xff, 1);
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0xfa);
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0xaa);
	/* Injected scancodes come out in order. */
	assert_int_equal(i8042_kbd_input(&k, cad, sizeof(cad)), sizeof(cad));
	for (size_t i = 0; i < sizeof(cad); i++)
		assert_int_equal(i8042_data_ops.read(&k, 0, 1), cad[i]);
	/* The queue is bounded; a flood is cut off, not overrun. */
	uint8_t flood[64];
	memset(flood, 0x1c, sizeof(flood));
	assert_int_equal(i8042_kbd_input(&k, flood, sizeof(flood)), I8042_QUEUE);
	/* With the keyboard interrupt disabled in the command byte, no IRQ. */
	for (int i = 0; i < I8042_QUEUE; i++)
		i8042_data_ops.read(&k, 0, 1);
	i8042_ctl_ops.write(&k, 0, 0x60, 1);
	i8042_data_ops.write(&k, 0, 0x44, 1);
	pulses = 0;
	i8042_data_ops.write(&k, 0, 0xf4, 1);
	assert_int_equal(pulses, 0);
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0xfa);
	/* No mouse: AUX bytes vanish and the AUX test reports a fault. */
	i8042_ctl_ops.write(&k, 0, 0xd4, 1);
	i8042_data_ops.write(&k, 0, 0xf2, 1);
	assert_int_equal(i8042_ctl_ops.read(&k, 0, 1) & 1, 0);
	i8042_ctl_ops.write(&k, 0, 0xa9, 1);
	assert_int_equal(i8042_data_ops.read(&k, 0, 1), 0x01);
}

static time_t fixed_now(void)
{
	return 1700000000; /* 2023-11-14 22:13:20 UTC, a Tuesday */
}

static uint8_t cmos(struct rtc *r, uint8_t idx)
{
	rtc_ops.write(r, 0, idx, 1);
	return (uint8_t)rtc_ops.read(r, 1, 1);
}

static void cmos_set(struct rtc *r, uint8_t idx, uint8_t v)
{
	rtc_ops.write(r, 0, idx, 1);
	rtc_ops.write(r, 1, v, 1);
}

static void test_rtc_bcd_time(void **state)
{
	struct rtc r;

	rtc_init(&r, 256ull << 20);
	r.now = fixed_now;
	assert_int_equal(cmos(&r, 0x00), 0x20);  /* seconds, BCD */
	assert_int_equal(cmos(&r, 0x02), 0x13);
	assert_int_equal(cmos(&r, 0x04), 0x22);
	assert_int_equal(cmos(&r, 0x06), 0x03);  /* Tuesday = 3 */
	assert_int_equal(cmos(&r, 0x07), 0x14);
	assert_int_equal(cmos(&r, 0x08), 0x11);
	assert_int_equal(cmos(&r, 0x09), 0x23);
	assert_int_equal(cmos(&r, 0x32), 0x20);
	assert_int_equal(cmos(&r, 0x0a) & 0x80, 0);  /* no update in progress */
	assert_int_equal(cmos(&r, 0x0d), 0x80);      /* valid RAM and time */
	/* Extended memory above 16 MiB in 64 KiB units: 240 MiB = 3840. */
	assert_int_equal(cmos(&r, 0x34) | cmos(&r, 0x35) << 8, 3840);
	/* The index port's NMI bit is not part of the index. */
	rtc_ops.write(&r, 0, 0x80 | 0x09, 1);
	assert_int_equal(rtc_ops.read(&r, 1, 1), 0x23);
	assert_int_equal(rtc_ops.read(&r, 0, 1), 0xff);
}

static void test_rtc_binary_12h(void **state)
{
	struct rtc r;

	rtc_init(&r, 64ull << 20);
	r.now = fixed_now;
	cmos_set(&r, 0x0b, 0x04);                    /* binary, 12-hour */
	assert_int_equal(cmos(&r, 0x00), 20);
	assert_int_equal(cmos(&r, 0x04), 0x80 | 10); /* 22h = 10 PM */
	assert_int_equal(cmos(&r, 0x09), 23);
}

static void test_rtc_guest_sets_time(void **state)
{
	struct rtc r;

	rtc_init(&r, 64ull << 20);
	r.now = fixed_now;
	cmos_set(&r, 0x09, 0x30);   /* year 2030 */
	assert_int_equal(cmos(&r, 0x09), 0x30);
	assert_int_equal(cmos(&r, 0x07), 0x14);
	cmos_set(&r, 0x04, 0x05);   /* 05h */
	assert_int_equal(cmos(&r, 0x04), 0x05);
	assert_int_equal(r.offset % 3600, 0);
	/* NVRAM bytes round-trip; status C clears on read; D is read-only. */
	cmos_set(&r, 0x40, 0xab);
	assert_int_equal(cmos(&r, 0x40), 0xab);
	cmos_set(&r, 0x0d, 0x00);
	assert_int_equal(cmos(&r, 0x0d), 0x80);
	r.cmos[0x0c] = 0x90;
	assert_int_equal(cmos(&r, 0x0c), 0x90);
	assert_int_equal(cmos(&r, 0x0c), 0x00);
}

static void test_acpi_pm_poweroff(void **state)
{
	struct events ev = { 0 };
	struct sysevent_sink sink = { record, &ev };
	struct acpi_pm pm;

	acpi_pm_init(&pm, &sink, 5);
	acpi_pm_ops.write(&pm, 0, (3 << 2) | 0x20, 1);   /* S3: not offered */
	acpi_pm_ops.write(&pm, 0, (5 << 2), 1);          /* no SLP_EN */
	assert_int_equal(ev.poweroffs, 0);
	acpi_pm_ops.write(&pm, 0, (5 << 2) | 0x20, 1);
	assert_int_equal(ev.poweroffs, 1);
	assert_int_equal(acpi_pm_ops.read(&pm, 1, 1), 0);
}

static void test_debug_exit_status(void **state)
{
	struct events ev = { 0 };
	struct debug_exit d = { .sink = { record, &ev } };

	debug_exit_ops.write(&d, 0, 0x1234, 2);
	assert_int_equal(ev.exits, 1);
	assert_int_equal(ev.status, 0x34);   /* one status byte */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_i8042_reset_command),
		cmocka_unit_test(test_i8042_commands),
		cmocka_unit_test(test_i8042_keyboard),
		cmocka_unit_test(test_rtc_bcd_time),
		cmocka_unit_test(test_rtc_binary_12h),
		cmocka_unit_test(test_rtc_guest_sets_time),
		cmocka_unit_test(test_acpi_pm_poweroff),
		cmocka_unit_test(test_debug_exit_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
