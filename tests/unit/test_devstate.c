/*
 * Device snapshots: for each emulated device, program a non-trivial state
 * through its register interface, save it through the real snapshot file
 * writer and reader, load it into a freshly built device and check that the
 * registers read back the same and the host-side effects (IRQ levels, BAR
 * mappings, MSI routes) are redone. Corrupted sections (truncated, values
 * out of range, wrong PCI identity) must be refused with -EINVAL and leave
 * the target device exactly as it was.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/e1000.h"
#include "devices/legacy/acpi_pm.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/rtc.h"
#include "devices/legacy/uart.h"
#include "pci/pci.h"
#include "loop/loop.h"
#include "mem/gm.h"
#include "snapshot/snap.h"
#include "util/log.h"
#include "mem/gm_test.h"

#include "fakes.h"

/* ---- a section through the real file format ---- */

struct blob {
	uint8_t *p;
	size_t len;
	uint32_t version;
};

/* Close the writer's one section "dev", write the file, read it back and keep the payload. */
static struct blob blob_finish(struct snap_writer *w)
{
	char dir[] = "/tmp/kestrel-devstate-XXXXXX", path[64], err[256];
	struct snap_reader *r = malloc(sizeof(*r));
	struct snap_sec s;
	struct blob b;

	assert_non_null(r);
	snap_end(w);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/state", dir);
	assert_int_equal(snap_writer_save(w, path, err, sizeof(err)), 0);
	snap_writer_free(w);
	assert_int_equal(snap_reader_open(r, path, err, sizeof(err)), 0);
	assert_int_equal(snap_find(r, "dev", &s), 0);
	b.len = s.len;
	b.version = s.version;
	b.p = malloc(s.len ? s.len : 1);
	assert_non_null(b.p);
	memcpy(b.p, s.p, s.len);
	snap_reader_free(r);
	free(r);
	unlink(path);
	rmdir(dir);
	return b;
}

#define SAVE(fn, dev, ver)                               \
	({                                               \
		struct snap_writer w_;                   \
		snap_writer_init(&w_);                   \
		snap_begin(&w_, "dev", (ver));           \
		fn((dev), &w_);                          \
		blob_finish(&w_);                        \
	})

static struct snap_sec sec_of(const struct blob *b)
{
	return (struct snap_sec){ .name = "dev", .version = b->version, .p = b->p, .len = b->len };
}

/* Load a whole blob: the loader succeeds and consumes every byte. */
#define LOAD_OK(fn, dev, b)                                      \
	do {                                                     \
		struct snap_sec s_ = sec_of(b);                  \
		assert_int_equal(fn((dev), &s_), 0);             \
		assert_int_equal(snap_sec_end(&s_), 0);          \
	} while (0)

/* A copy of b with byte `off` set to v, or cut to `len` bytes. */
static struct blob blob_poke(const struct blob *b, size_t off, uint8_t v)
{
	struct blob c = *b;

	c.p = malloc(b->len);
	assert_non_null(c.p);
	memcpy(c.p, b->p, b->len);
	assert_true(off < b->len);
	c.p[off] = v;
	return c;
}

static struct blob blob_cut(const struct blob *b, size_t len)
{
	struct blob c = *b;

	c.p = malloc(b->len);
	assert_non_null(c.p);
	memcpy(c.p, b->p, b->len);
	c.len = len;
	return c;
}

static bool blob_eq(const struct blob *a, const struct blob *b)
{
	return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/*
 * The corrupted blob is refused with -EINVAL and the device's own saved
 * state is the same before and after. Frees `bad`.
 */
#define REFUSED(save, load, ver, dev, bad)                                       \
	do {                                                                     \
		struct blob bad_ = (bad), before_ = SAVE(save, dev, ver), after_; \
		struct snap_sec s_ = sec_of(&bad_);                              \
		assert_int_equal(load((dev), &s_), -EINVAL);                     \
		assert_true(s_.err);                                             \
		after_ = SAVE(save, dev, ver);                                   \
		assert_true(blob_eq(&before_, &after_));                         \
		free(before_.p);                                                 \
		free(after_.p);                                                  \
		free(bad_.p);                                                    \
	} while (0)

/* ---- a recording interrupt line ---- */

struct line {
	bool level;
	unsigned rises;
};

static void line_set(struct irq *irq, bool level)
{
	struct line *l = irq->opaque;

	if (level && !l->level)
		l->rises++;
	l->level = level;
}

static const struct irq_ops line_ops = { .set_level = line_set };

/* ---- UART ---- */

static void null_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
}

static const struct chardev_ops null_ops = { .write = null_write };

static uint8_t urd(struct uart *u, unsigned reg)
{
	return (uint8_t)uart_ops.read(u, reg, 1);
}

static void uwr(struct uart *u, unsigned reg, uint8_t v)
{
	uart_ops.write(u, reg, v, 1);
}

static void test_uart_roundtrip(void **state)
{
	struct chardev cd = { .ops = &null_ops };
	struct line l1 = { 0 }, l2 = { 0 };
	struct irq i1 = { .ops = &line_ops, .opaque = &l1 }, i2 = { .ops = &line_ops, .opaque = &l2 };
	struct uart a, b;
	struct blob bl;

	uart_init(&a, &i1, &cd);
	uwr(&a, 3, 0x80);           /* DLAB: 115200 / 3 */
	uwr(&a, 0, 0x03);
	uwr(&a, 1, 0x00);
	uwr(&a, 3, 0x1b);           /* 8E1 */
	uwr(&a, 2, 0xc1);           /* FIFO on, trigger 14 */
	uwr(&a, 4, 0x0b);           /* DTR RTS OUT2 */
	uwr(&a, 7, 0x5a);
	uwr(&a, 1, 0x05);           /* RDI + RLSI */
	assert_int_equal(uart_receive(&a, (const uint8_t *)"hello", 5), 5);
	assert_int_equal(urd(&a, 0), 'h');   /* moves the FIFO head */
	assert_true(l1.level);      /* below the trigger: character timeout */

	bl = SAVE(uart_save, &a, UART_SNAP_VERSION);
	assert_int_equal(bl.version, UART_SNAP_VERSION);
	uart_init(&b, &i2, &cd);
	LOAD_OK(uart_load, &b, &bl);
	assert_true(l2.level);      /* re-driven from the restored registers */
	assert_int_equal(urd(&b, 3), 0x1b);
	assert_int_equal(urd(&b, 1), 0x05);
	assert_int_equal(urd(&b, 4), 0x0b);
	assert_int_equal(urd(&b, 7), 0x5a);
	assert_int_equal(urd(&b, 6), urd(&a, 6));
	assert_int_equal(urd(&b, 2), 0xcc);  /* FIFO bits + character timeout */
	assert_int_equal(urd(&b, 5) & 0x61, 0x61);
	for (const char *p = "ello"; *p; p++)
		assert_int_equal(urd(&b, 0), *p);
	assert_int_equal(urd(&b, 5) & 1, 0);
	assert_false(l2.level);
	uwr(&b, 3, 0x9b);
	assert_int_equal(urd(&b, 0), 0x03);
	assert_int_equal(urd(&b, 1), 0x00);
	free(bl.p);
	uart_exit(&a);
	uart_exit(&b);
}

static void test_uart_refused(void **state)
{
	struct chardev cd = { .ops = &null_ops };
	struct line l = { 0 };
	struct irq irq = { .ops = &line_ops, .opaque = &l };
	struct uart a, b;
	struct blob bl, bad;

	uart_init(&a, NULL, &cd);
	uwr(&a, 2, 0x01);
	uart_receive(&a, (const uint8_t *)"xyz", 3);
	bl = SAVE(uart_save, &a, UART_SNAP_VERSION);
	uart_init(&b, &irq, &cd);
	uwr(&b, 7, 0x77);
	uwr(&b, 1, 0x02);
	/* Layout: ier lcr mcr lsr msr scr dll dlm fcr thr_irq head count rx[16]. */
	REFUSED(uart_save, uart_load, UART_SNAP_VERSION, &b, blob_cut(&bl, bl.len - 1));
	REFUSED(uart_save, uart_load, UART_SNAP_VERSION, &b, blob_poke(&bl, 11, 17));   /* count > 16 */
	REFUSED(uart_save, uart_load, UART_SNAP_VERSION, &b, blob_poke(&bl, 10, 16));   /* head */
	/* Without the FIFO the holding register keeps one byte. */
	bad = blob_poke(&bl, 8, 0x00);
	REFUSED(uart_save, uart_load, UART_SNAP_VERSION, &b, bad);
	REFUSED(uart_save, uart_load, UART_SNAP_VERSION, &b, blob_poke(&bl, 9, 2));     /* bool */
	REFUSED(uart_save, uart_load, UART_SNAP_VERSION, &b, blob_poke(&bl, 0, 0x10));  /* IER */
	bad = blob_cut(&bl, bl.len);
	bad.version = 2;
	REFUSED(uart_save, uart_load, UART_SNAP_VERSION, &b, bad);
	assert_int_equal(urd(&b, 7), 0x77);
	free(bl.p);
	uart_exit(&a);
	uart_exit(&b);
}

/* ---- i8042 ---- */

static uint8_t kdata(struct i8042 *k)
{
	return (uint8_t)i8042_data_ops.read(k, 0, 1);
}

static void test_i8042_roundtrip(void **state)
{
	struct i8042 a, b;
	struct blob bl;

	i8042_init(&a, NULL, NULL);
	i8042_data_ops.write(&a, 0, 0xf2, 1);           /* identify: fa ab 83 */
	assert_int_equal(kdata(&a), 0xfa);
	i8042_data_ops.write(&a, 0, 0xed, 1);           /* LEDs: fa, argument pending */
	i8042_ctl_ops.write(&a, 0, 0x60, 1);            /* command byte: data pending */

	bl = SAVE(i8042_save, &a, I8042_SNAP_VERSION);
	i8042_init(&b, NULL, NULL);
	LOAD_OK(i8042_load, &b, &bl);
	assert_int_equal(i8042_ctl_ops.read(&b, 0, 1), i8042_ctl_ops.read(&a, 0, 1));
	assert_int_equal(i8042_ctl_ops.read(&b, 0, 1) & 0x09, 0x09);   /* OBF, last write a command */
	i8042_data_ops.write(&b, 0, 0x47, 1);           /* goes to the pending 0x60 */
	i8042_ctl_ops.write(&b, 0, 0x20, 1);
	assert_int_equal(kdata(&b), 0xab);
	assert_int_equal(kdata(&b), 0x83);
	assert_int_equal(kdata(&b), 0xfa);
	assert_int_equal(kdata(&b), 0x47);
	assert_int_equal(i8042_ctl_ops.read(&b, 0, 1) & 1, 0);
	i8042_data_ops.write(&b, 0, 0x07, 1);           /* the LED argument: one ACK, nothing else */
	assert_int_equal(kdata(&b), 0xfa);
	assert_int_equal(i8042_ctl_ops.read(&b, 0, 1) & 1, 0);
	free(bl.p);
}

static void test_i8042_refused(void **state)
{
	struct i8042 a, b;
	struct blob bl;

	i8042_init(&a, NULL, NULL);
	i8042_data_ops.write(&a, 0, 0xf2, 1);
	bl = SAVE(i8042_save, &a, I8042_SNAP_VERSION);
	i8042_init(&b, NULL, NULL);
	i8042_ctl_ops.write(&b, 0, 0xaa, 1);
	/* Layout: status cmd_byte pending_cmd kbd_pending head len queue[16] kbd[16]. */
	REFUSED(i8042_save, i8042_load, I8042_SNAP_VERSION, &b, blob_cut(&bl, 20));
	REFUSED(i8042_save, i8042_load, I8042_SNAP_VERSION, &b, blob_poke(&bl, 5, 17));
	REFUSED(i8042_save, i8042_load, I8042_SNAP_VERSION, &b, blob_poke(&bl, 4, 16));
	REFUSED(i8042_save, i8042_load, I8042_SNAP_VERSION, &b, blob_poke(&bl, 5, 0));    /* OBF, empty */
	REFUSED(i8042_save, i8042_load, I8042_SNAP_VERSION, &b, blob_poke(&bl, 22, 7));   /* bool */
	assert_int_equal(kdata(&b), 0x55);
	free(bl.p);
}

/* ---- RTC and ACPI PM ---- */

static time_t fixed_now(void)
{
	return 1700000000;
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

static void test_rtc_roundtrip(void **state)
{
	struct rtc a, b;
	struct blob bl;

	rtc_init(&a, 512ull << 20);
	a.now = fixed_now;
	cmos_set(&a, 0x0b, 0x06);        /* binary, 24 h */
	cmos_set(&a, 0x02, 45);          /* the guest sets the minutes: an offset */
	cmos_set(&a, 0x40, 0x42);        /* plain CMOS RAM */
	rtc_ops.write(&a, 0, 0x40, 1);   /* index left pointing somewhere */

	bl = SAVE(rtc_save, &a, RTC_SNAP_VERSION);
	rtc_init(&b, 64ull << 20);
	b.now = fixed_now;
	LOAD_OK(rtc_load, &b, &bl);
	assert_int_equal(rtc_ops.read(&b, 1, 1), 0x42);   /* the restored index */
	assert_int_equal(cmos(&b, 0x02), 45);
	assert_int_equal(cmos(&b, 0x00), cmos(&a, 0x00));
	assert_int_equal(cmos(&b, 0x04), cmos(&a, 0x04));
	assert_int_equal(cmos(&b, 0x0b), 0x06);
	assert_int_equal(cmos(&b, 0x34), cmos(&a, 0x34));  /* memory size from the snapshot */
	free(bl.p);
}

static void test_rtc_refused(void **state)
{
	struct rtc a, b;
	struct blob bl;

	rtc_init(&a, 512ull << 20);
	bl = SAVE(rtc_save, &a, RTC_SNAP_VERSION);
	rtc_init(&b, 512ull << 20);
	cmos_set(&b, 0x41, 0x99);
	/* Layout: index cmos[128] offset(u64). */
	REFUSED(rtc_save, rtc_load, RTC_SNAP_VERSION, &b, blob_poke(&bl, 0, 0x80));
	REFUSED(rtc_save, rtc_load, RTC_SNAP_VERSION, &b, blob_poke(&bl, 1 + 128 + 7, 0x40));
	REFUSED(rtc_save, rtc_load, RTC_SNAP_VERSION, &b, blob_cut(&bl, 100));
	assert_int_equal(cmos(&b, 0x41), 0x99);
	free(bl.p);
}

static void test_acpi_pm(void **state)
{
	struct acpi_pm a, b;
	struct blob bl;

	acpi_pm_init(&a, NULL, 5);
	a.status = 0x80;   /* WAK_STS: nothing in the model sets it, a snapshot may carry it */
	bl = SAVE(acpi_pm_save, &a, ACPI_PM_SNAP_VERSION);
	acpi_pm_init(&b, NULL, 5);
	LOAD_OK(acpi_pm_load, &b, &bl);
	assert_int_equal(acpi_pm_ops.read(&b, 1, 1), 0x80);
	acpi_pm_ops.write(&b, 1, 0x80, 1);
	assert_int_equal(acpi_pm_ops.read(&b, 1, 1), 0);
	REFUSED(acpi_pm_save, acpi_pm_load, ACPI_PM_SNAP_VERSION, &b, blob_poke(&bl, 0, 0x01));
	REFUSED(acpi_pm_save, acpi_pm_load, ACPI_PM_SNAP_VERSION, &b, blob_cut(&bl, 0));
	free(bl.p);
}

/* ---- PCI ---- */

static uint64_t bar_read(void *opaque, uint64_t off, unsigned size)
{
	return 0xabcd;
}

static void bar_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
}

static const struct bus_dev_ops bar_ops = { .read = bar_read, .write = bar_write };

struct remap_log {
	unsigned n;
	struct {
		unsigned bar;
		uint64_t addr;
		bool mapped;
	} ev[16];
};

static void on_remap(struct pci_dev *d, unsigned bar, uint64_t addr, bool mapped)
{
	struct remap_log *l = d->opaque;

	assert_true(l->n < 16);
	l->ev[l->n].bar = bar;
	l->ev[l->n].addr = addr;
	l->ev[l->n++].mapped = mapped;
}

static const struct pci_dev_ops remap_ops = { .bar_remap = on_remap };

struct pci_fx {
	struct bus pio, mmio;
	struct pci_host host;
	struct pci_dev dev;
	struct remap_log log;
};

static void pci_fx_init(struct pci_fx *f, uint16_t device_id)
{
	memset(f, 0, sizeof(*f));
	assert_int_equal(bus_init(&f->pio, "pio"), 0);
	assert_int_equal(bus_init(&f->mmio, "mmio"), 0);
	assert_int_equal(pci_host_init(&f->host, &f->pio, &f->mmio, NULL), 0);
	pci_dev_init(&f->dev, 0x1234, device_id, 0x058000, 2, "testdev");
	f->dev.ops = &remap_ops;
	f->dev.opaque = &f->log;
	assert_int_equal(pci_dev_set_bar(&f->dev, 0, 0x1000, PCI_BAR_MEM64, &bar_ops, NULL), 0);
	assert_int_equal(pci_dev_set_bar(&f->dev, 2, 0x20, PCI_BAR_IO, &bar_ops, NULL), 0);
	assert_true(pci_dev_add_cap(&f->dev, 0x09, 8) > 0);
	assert_int_equal(pci_host_add(&f->host, &f->dev, 1), 1);
}

static void pci_fx_exit(struct pci_fx *f)
{
	pci_host_exit(&f->host);
	bus_exit(&f->pio);
	bus_exit(&f->mmio);
}

static uint32_t pcfg(struct pci_fx *f, unsigned slot, unsigned off, unsigned size)
{
	return pci_host_cfg_read(&f->host, 0, slot, 0, off, size);
}

static void pcfg_wr(struct pci_fx *f, unsigned slot, unsigned off, unsigned size, uint32_t v)
{
	pci_host_cfg_write(&f->host, 0, slot, 0, off, size, v);
}

static bool mapped_at(struct bus *b, uint64_t addr)
{
	uint64_t v;

	return bus_read(b, addr, 4, &v) == 0 && v == 0xabcd;
}

static void test_pci_roundtrip(void **state)
{
	struct pci_fx *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct blob bl;

	pci_fx_init(a, 0x0042);
	pcfg_wr(a, 1, PCI_BAR0, 4, 0xe0001000);
	pcfg_wr(a, 1, PCI_BAR0 + 4, 4, 0x1);            /* above 4 GiB */
	pcfg_wr(a, 1, PCI_BAR0 + 8, 4, 0xc140);
	pcfg_wr(a, 1, PCI_COMMAND, 2, PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER);
	pcfg_wr(a, 1, PCI_LATENCY, 1, 0x40);
	pcfg_wr(a, 1, PCI_INT_LINE, 1, 0x0b);
	assert_true(mapped_at(&a->mmio, 0x1e0001000ull));

	bl = SAVE(pci_dev_save, &a->dev, PCI_SNAP_VERSION);
	pci_fx_init(b, 0x0042);
	LOAD_OK(pci_dev_load, &b->dev, &bl);
	for (unsigned off = 0; off < 0x100; off += 4)
		assert_int_equal(pcfg(b, 1, off, 4), pcfg(a, 1, off, 4));
	assert_true(mapped_at(&b->mmio, 0x1e0001000ull));
	assert_true(mapped_at(&b->pio, 0xc140));
	assert_int_equal(b->log.n, 2);
	assert_int_equal(b->log.ev[0].bar, 0);
	assert_int_equal(b->log.ev[0].addr, 0x1e0001000ull);
	assert_true(b->log.ev[0].mapped);
	assert_int_equal(b->log.ev[1].bar, 2);
	assert_int_equal(b->log.ev[1].addr, 0xc140);
	pci_fx_exit(b);

	/* Loading over a device mapped elsewhere moves its BARs (unmap hook, then map). */
	pci_fx_init(b, 0x0042);
	pcfg_wr(b, 1, PCI_BAR0, 4, 0xd0000000);
	pcfg_wr(b, 1, PCI_COMMAND, 2, PCI_CMD_MEM);
	assert_true(mapped_at(&b->mmio, 0xd0000000));
	b->log.n = 0;
	LOAD_OK(pci_dev_load, &b->dev, &bl);
	assert_false(mapped_at(&b->mmio, 0xd0000000));
	assert_true(mapped_at(&b->mmio, 0x1e0001000ull));
	assert_int_equal(b->log.n, 3);
	assert_false(b->log.ev[0].mapped);
	assert_int_equal(b->log.ev[0].addr, 0xd0000000);
	pci_fx_exit(b);

	/* Decoding off in the snapshot: nothing mapped. */
	pcfg_wr(a, 1, PCI_COMMAND, 2, 0);
	free(bl.p);
	bl = SAVE(pci_dev_save, &a->dev, PCI_SNAP_VERSION);
	pci_fx_init(b, 0x0042);
	LOAD_OK(pci_dev_load, &b->dev, &bl);
	assert_false(mapped_at(&b->mmio, 0x1e0001000ull));
	assert_int_equal(b->log.n, 0);
	assert_int_equal(pcfg(b, 1, PCI_BAR0 + 8, 4), 0xc141);
	pci_fx_exit(b);
	pci_fx_exit(a);
	free(bl.p);
	free(a);
	free(b);
}

static void test_pci_refused(void **state)
{
	struct pci_fx *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct blob bl, bad;

	pci_fx_init(a, 0x0042);
	pcfg_wr(a, 1, PCI_BAR0, 4, 0xe0000000);
	pcfg_wr(a, 1, PCI_COMMAND, 2, PCI_CMD_MEM);
	bl = SAVE(pci_dev_save, &a->dev, PCI_SNAP_VERSION);

	/* Another device in the slot. */
	pci_fx_init(b, 0x0043);
	pcfg_wr(b, 1, PCI_LATENCY, 1, 0x20);
	REFUSED(pci_dev_save, pci_dev_load, PCI_SNAP_VERSION, &b->dev, blob_cut(&bl, bl.len));
	assert_false(mapped_at(&b->mmio, 0xe0000000));
	pci_fx_exit(b);

	pci_fx_init(b, 0x0042);
	pcfg_wr(b, 1, PCI_LATENCY, 1, 0x20);
	/* Layout: u32 size, then cfg[]: cfg byte i is at 4 + i. */
	REFUSED(pci_dev_save, pci_dev_load, PCI_SNAP_VERSION, &b->dev, blob_cut(&bl, bl.len - 1));
	REFUSED(pci_dev_save, pci_dev_load, PCI_SNAP_VERSION, &b->dev, blob_poke(&bl, 1, 0x20));  /* size */
	REFUSED(pci_dev_save, pci_dev_load, PCI_SNAP_VERSION, &b->dev, blob_poke(&bl, 4 + 0x0b, 0x02));
	REFUSED(pci_dev_save, pci_dev_load, PCI_SNAP_VERSION, &b->dev, blob_poke(&bl, 4 + PCI_HEADER_TYPE, 0x80));
	REFUSED(pci_dev_save, pci_dev_load, PCI_SNAP_VERSION, &b->dev, blob_poke(&bl, 4 + 0x40, 0x05));  /* cap id */
	REFUSED(pci_dev_save, pci_dev_load, PCI_SNAP_VERSION, &b->dev, blob_poke(&bl, 4 + PCI_BAR0, 0x08)); /* type bits */
	REFUSED(pci_dev_save, pci_dev_load, PCI_SNAP_VERSION, &b->dev, blob_poke(&bl, 4 + 0x800, 0x01)); /* extended */
	bad = blob_cut(&bl, bl.len);
	bad.version = 0;
	REFUSED(pci_dev_save, pci_dev_load, PCI_SNAP_VERSION, &b->dev, bad);
	assert_false(mapped_at(&b->mmio, 0xe0000000));
	assert_int_equal(b->log.n, 0);
	/* Writable bits may differ from the constructed device's: that is the state. */
	bad = blob_poke(&bl, 4 + PCI_INT_LINE, 0x0e);
	LOAD_OK(pci_dev_load, &b->dev, &bad);
	assert_int_equal(pcfg(b, 1, PCI_INT_LINE, 1), 0x0e);
	assert_true(mapped_at(&b->mmio, 0xe0000000));
	free(bad.p);
	pci_fx_exit(b);
	pci_fx_exit(a);
	free(bl.p);
	free(a);
	free(b);
}

static void test_pci_host(void **state)
{
	struct pci_fx *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	uint64_t v;
	struct blob bl;

	pci_fx_init(a, 0x0042);
	assert_int_equal(pci_host_register(&a->host, 0xb0000000), 0);
	pcfg_wr(a, 0, PCI_LATENCY, 1, 0x30);
	bus_write(&a->pio, 0xcf8, 4, 0x80000810u);
	bl = SAVE(pci_host_save, &a->host, PCI_HOST_SNAP_VERSION);

	pci_fx_init(b, 0x0042);
	assert_int_equal(pci_host_register(&b->host, 0xb0000000), 0);
	LOAD_OK(pci_host_load, &b->host, &bl);
	assert_int_equal(bus_read(&b->pio, 0xcf8, 4, &v), 0);
	assert_int_equal(v, 0x80000810u);
	assert_int_equal(pcfg(b, 0, PCI_LATENCY, 1), 0x30);
	/* CONFIG_DATA now reaches slot 1's BAR0, as the restored address says. */
	assert_int_equal(bus_read(&b->pio, 0xcfc, 4, &v), 0);
	assert_int_equal(v, 0x4);

	/* Layout: u32 conf_addr, then the bridge as pci_dev_save. */
	REFUSED(pci_host_save, pci_host_load, PCI_HOST_SNAP_VERSION, &b->host, blob_poke(&bl, 0, 0x11));
	REFUSED(pci_host_save, pci_host_load, PCI_HOST_SNAP_VERSION, &b->host, blob_poke(&bl, 4 + 4, 0x58));
	REFUSED(pci_host_save, pci_host_load, PCI_HOST_SNAP_VERSION, &b->host, blob_cut(&bl, 2));
	REFUSED(pci_host_save, pci_host_load, PCI_HOST_SNAP_VERSION, &b->host, blob_cut(&bl, 200));
	pci_fx_exit(b);
	pci_fx_exit(a);
	free(bl.p);
	free(a);
	free(b);
}

/* ---- e1000 ---- */

#define RAM_GPA  0x100000ull
#define RAM_SIZE (2u << 20)
#define BAR0     0xc0000000ull
#define BAR1     0xc000u
#define TXR      (RAM_GPA + 0x0000)
#define RXR      (RAM_GPA + 0x1000)
#define TXB      (RAM_GPA + 0x10000)
#define RXB      (RAM_GPA + 0x40000)

enum {
	CTRL = 0x0, STATUS = 0x8, EECD = 0x10, EERD = 0x14, MDIC = 0x20, ICR = 0xc0, ITR = 0xc4, ICS = 0xc8,
	IMS = 0xd0, RCTL = 0x100, TCTL = 0x400, TIPG = 0x410, RDBAL = 0x2800, RDBAH = 0x2804, RDLEN = 0x2808,
	RDH = 0x2810, RDT = 0x2818, TDBAL = 0x3800, TDBAH = 0x3804, TDLEN = 0x3808, TDH = 0x3810,
	TDT = 0x3818, GPTC = 0x4080, GOTCL = 0x4090, TPT = 0x40d4, MTA = 0x5200, RA = 0x5400, VFTA = 0x5600,
};

#define ICR_TXDW 0x01u
#define ICR_RXT0 0x80u

static const uint8_t MAC[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };

/* The backend and the MSI host are the shared fakes (fakes.c). */

struct nic {
	struct bus pio, mmio;
	struct pci_host host;
	struct guest_mem gm;
	uint8_t *ram;
	struct fake_be *be;
	struct fake_msi fm;
	struct msi_host msi;
	struct line line;
	struct irq intx;
	struct e1000 *e;
};

static uint32_t nrd(struct nic *n, uint32_t reg)
{
	uint64_t v;

	assert_int_equal(bus_read(&n->mmio, BAR0 + reg, 4, &v), 0);
	return (uint32_t)v;
}

static void nwr(struct nic *n, uint32_t reg, uint32_t v)
{
	assert_int_equal(bus_write(&n->mmio, BAR0 + reg, 4, v), 0);
}

static uint32_t ncfg(struct nic *n, unsigned off, unsigned size)
{
	return pci_host_cfg_read(&n->host, 0, 1, 0, off, size);
}

static void ncfg_wr(struct nic *n, unsigned off, unsigned size, uint32_t v)
{
	pci_host_cfg_write(&n->host, 0, 1, 0, off, size, v);
}

/* A NIC as the machine builds it; `program`: also what firmware does (BARs, decoding, mastering). */
static struct nic *nic_new(bool with_msi, bool program)
{
	struct nic *n = calloc(1, sizeof(*n));
	struct e1000_config cfg = { .backend = NULL };
	char err[128];

	assert_non_null(n);
	log_set_level(LOG_ERROR);
	assert_int_equal(bus_init(&n->pio, "pio"), 0);
	assert_int_equal(bus_init(&n->mmio, "mmio"), 0);
	assert_int_equal(pci_host_init(&n->host, &n->pio, &n->mmio, NULL), 0);
	n->ram = calloc(1, RAM_SIZE);
	assert_non_null(n->ram);
	gm_init_fake(&n->gm, RAM_GPA, n->ram, RAM_SIZE);
	n->be = fb_new(false);
	n->fm.next_gsi = 40;
	n->fm.irqfd = -1;
	n->msi = (struct msi_host){ &fake_msi_ops, &n->fm };
	memcpy(cfg.mac, MAC, 6);
	cfg.backend = &n->be->be;
	assert_int_equal(e1000_new(&n->e, &cfg, &n->gm, with_msi ? &n->msi : NULL, err, sizeof(err)), 0);
	assert_int_equal(pci_host_add(&n->host, e1000_pci(n->e), 1), 1);
	n->intx = (struct irq){ .ops = &line_ops, .opaque = &n->line };
	e1000_set_irq(n->e, &n->intx);
	if (program) {
		ncfg_wr(n, PCI_BAR0, 4, (uint32_t)BAR0);
		ncfg_wr(n, PCI_BAR0 + 4, 4, BAR1);
		ncfg_wr(n, PCI_COMMAND, 2, PCI_CMD_MEM | PCI_CMD_IO | PCI_CMD_MASTER);
	}
	return n;
}

static void nic_free(struct nic *n)
{
	e1000_free(n->e);
	pci_host_exit(&n->host);
	bus_exit(&n->pio);
	bus_exit(&n->mmio);
	free(n->ram);
	free(n);
}

static uint8_t *nram(struct nic *n, uint64_t gpa)
{
	assert_true(gpa >= RAM_GPA && gpa < RAM_GPA + RAM_SIZE);
	return n->ram + (gpa - RAM_GPA);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A legacy transmit descriptor: EOP | RS. */
static void txd(struct nic *n, unsigned i, uint64_t buf, uint16_t len, uint8_t cmd)
{
	uint8_t *d = nram(n, TXR + i * 16);

	memset(d, 0, 16);
	put64(d, buf);
	d[8] = (uint8_t)len;
	d[9] = (uint8_t)(len >> 8);
	d[11] = cmd;
}

static void tx_ring(struct nic *n, unsigned count)
{
	nwr(n, TDLEN, count * 16);
	nwr(n, TDBAH, 0);
	nwr(n, TDBAL, (uint32_t)TXR);
	nwr(n, TDH, 0);
	nwr(n, TDT, 0);
	nwr(n, TCTL, (1u << 1) | (1u << 3));
}

static void frame(uint8_t *p, size_t len, uint8_t seed)
{
	memcpy(p, MAC, 6);
	memcpy(p + 6, "\x02\x00\x00\x00\x00\x07", 6);
	p[12] = 0x08;
	p[13] = 0x00;
	for (size_t i = 14; i < len; i++)
		p[i] = (uint8_t)(i * 13 + seed);
}

static unsigned find_cap(struct nic *n, uint8_t id)
{
	for (unsigned p = ncfg(n, PCI_CAP_PTR, 1); p; p = ncfg(n, p + 1, 1))
		if (ncfg(n, p, 1) == id)
			return p;
	return 0;
}

/* Registers reading them does not change. */
static const uint32_t plain_regs[] = {
	CTRL, STATUS, EECD, EERD, MDIC, ITR, IMS, RCTL, TCTL, TIPG, RDBAL, RDBAH, RDLEN, RDH, RDT,
	TDBAL, TDBAH, TDLEN, TDH, TDT,
};

static void test_e1000_roundtrip(void **state)
{
	struct nic *a = nic_new(true, true), *b = nic_new(true, false);
	unsigned cap = find_cap(a, 0x05);
	uint64_t v;
	struct blob bl;

	assert_int_not_equal(cap, 0);
	ncfg_wr(a, cap + 4, 4, 0xfee01000);
	ncfg_wr(a, cap + 12, 2, 0x4062);
	ncfg_wr(a, cap + 2, 2, 1);
	nwr(a, CTRL, nrd(a, CTRL) | (1u << 6));          /* SLU */
	nwr(a, MDIC, (1u << 26) | (1u << 21) | (0x10u << 16) | 0x0078);   /* a PHY write... */
	nwr(a, MDIC, (2u << 26) | (1u << 21) | (0x10u << 16));            /* ...read back */
	nwr(a, EERD, (1u << 8) | 1);                      /* EEPROM word 1 */
	nwr(a, MTA + 4 * 7, 0x80000001u);
	nwr(a, RA + 8, 0x12345678u);
	nwr(a, RA + 12, 0x8000abcdu);
	nwr(a, VFTA + 4 * 100, 0x00f0f000u);
	nwr(a, ITR, 0x0200);
	nwr(a, TIPG, 0x00602008);
	nwr(a, IMS, ICR_TXDW | ICR_RXT0);
	nrd(a, ICR);
	assert_int_equal(bus_write(&a->pio, BAR1, 4, 0x5400), 0);    /* IOADDR -> RAL0 */
	tx_ring(a, 8);
	frame(nram(a, TXB), 100, 1);
	txd(a, 0, TXB, 100, 0x09);
	nwr(a, TDT, 1);                                  /* no loop: sent inline */
	assert_int_equal(a->be->out_count, 1);
	assert_int_equal(eventfd_read(a->fm.irqfd, &v), 0);   /* TXDW as an MSI */
	nwr(a, RDLEN, 8 * 16);
	nwr(a, RDBAL, (uint32_t)RXR);
	nwr(a, RCTL, (1u << 15));                         /* BAM, receiver off */
	e1000_quiesce(a->e);

	bl = SAVE(e1000_save, a->e, E1000_SNAP_VERSION);
	memcpy(b->ram, a->ram, RAM_SIZE);                 /* what the memory file does */
	LOAD_OK(e1000_load, b->e, &bl);

	/* The PCI side: BARs where the guest put them, MSI re-established. */
	assert_int_equal(ncfg(b, PCI_COMMAND, 2), ncfg(a, PCI_COMMAND, 2));
	assert_int_equal(ncfg(b, PCI_BAR0, 4), ncfg(a, PCI_BAR0, 4));
	assert_int_equal(b->fm.addr, 0xfee01000);
	assert_int_equal(b->fm.data, 0x4062);
	assert_true(b->fm.irqfd >= 0);
	assert_false(b->line.level);
	for (size_t i = 0; i < sizeof(plain_regs) / sizeof(plain_regs[0]); i++)
		assert_int_equal(nrd(b, plain_regs[i]), nrd(a, plain_regs[i]));
	for (unsigned i = 0; i < 128; i++) {
		assert_int_equal(nrd(b, MTA + 4 * i), nrd(a, MTA + 4 * i));
		assert_int_equal(nrd(b, VFTA + 4 * i), nrd(a, VFTA + 4 * i));
	}
	for (unsigned i = 0; i < 32; i++)
		assert_int_equal(nrd(b, RA + 4 * i), nrd(a, RA + 4 * i));
	assert_int_equal(nrd(b, EERD) >> 16, MAC[2] | MAC[3] << 8);
	assert_int_equal(nrd(b, MDIC) & 0xffff, 0x0078);
	/* Statistics (clear on read) carried over. */
	assert_int_equal(nrd(b, GPTC), 1);
	assert_int_equal(nrd(b, TPT), 1);
	assert_int_equal(nrd(b, GOTCL), nrd(a, GOTCL));
	/* IOADDR too. */
	assert_int_equal(bus_read(&b->pio, BAR1, 4, &v), 0);
	assert_int_equal(v, 0x5400);
	assert_int_equal(bus_read(&b->pio, BAR1 + 4, 4, &v), 0);
	assert_int_equal(v, MAC[0] | MAC[1] << 8 | MAC[2] << 16 | (uint32_t)MAC[3] << 24);
	/* The restored device carries on with the ring: the next frame goes out on b. */
	assert_int_equal(nrd(b, ICR), nrd(a, ICR));
	frame(nram(b, TXB + 0x800), 80, 2);
	txd(b, 1, TXB + 0x800, 80, 0x09);
	nwr(b, TDT, 2);
	usleep(2000);                                    /* past ITR's interval, then any access delivers */
	nrd(b, STATUS);
	assert_int_equal(b->be->out_count, 1);
	assert_int_equal(b->be->out[0].len, 80);
	assert_memory_equal(b->be->out[0].data, nram(b, TXB + 0x800), 80);
	assert_int_equal(nrd(b, TDH), 2);
	assert_int_equal(eventfd_read(b->fm.irqfd, &v), 0);
	assert_int_equal(a->be->out_count, 1);
	free(bl.p);
	nic_free(a);
	nic_free(b);
}

static void test_e1000_intx_level(void **state)
{
	struct nic *a = nic_new(false, true), *b = nic_new(false, false);
	struct blob bl;

	nwr(a, IMS, ICR_RXT0);
	nwr(a, ICS, ICR_RXT0);
	assert_true(a->line.level);
	bl = SAVE(e1000_save, a->e, E1000_SNAP_VERSION);
	LOAD_OK(e1000_load, b->e, &bl);
	assert_true(b->line.level);
	assert_int_equal(nrd(b, ICR), ICR_RXT0);
	assert_false(b->line.level);
	free(bl.p);

	/* And lowered when the snapshot's line is low. */
	bl = SAVE(e1000_save, b->e, E1000_SNAP_VERSION);
	assert_true(a->line.level);
	LOAD_OK(e1000_load, a->e, &bl);
	assert_false(a->line.level);
	free(bl.p);
	nic_free(a);
	nic_free(b);
}

/* A frame the backend refused travels in the snapshot and goes out after restore. */
static void test_e1000_tx_pending(void **state)
{
	struct nic *a = nic_new(false, true), *b = nic_new(false, false);
	struct blob bl;

	tx_ring(a, 8);
	frame(nram(a, TXB), 300, 3);
	frame(nram(a, TXB + 0x1000), 200, 4);
	txd(a, 0, TXB, 300, 0x09);
	txd(a, 1, TXB + 0x1000, 200, 0x09);
	a->be->eagain = 1000;
	nwr(a, TDT, 2);
	e1000_quiesce(a->e);
	assert_int_equal(a->be->out_count, 0);
	assert_int_equal(nrd(a, TDH), 1);                /* held after the first frame */

	bl = SAVE(e1000_save, a->e, E1000_SNAP_VERSION);
	memcpy(b->ram, a->ram, RAM_SIZE);
	memset(nram(b, TXB), 0, 300);                     /* the frame must come from the snapshot */
	LOAD_OK(e1000_load, b->e, &bl);
	e1000_poll(b->e);
	assert_int_equal(b->be->out_count, 2);
	assert_int_equal(b->be->out[0].len, 300);
	assert_memory_equal(b->be->out[0].data, nram(a, TXB), 300);
	assert_int_equal(b->be->out[1].len, 200);
	assert_int_equal(nrd(b, TDH), 2);
	free(bl.p);
	nic_free(a);
	nic_free(b);
}

/* Quiesce does the transmit work the (stopped) I/O thread had pending. */
static void test_e1000_quiesce(void **state)
{
	struct nic *a = nic_new(false, true);
	struct loop *l = loop_new();

	assert_non_null(l);
	assert_int_equal(e1000_attach(a->e, l), 0);
	tx_ring(a, 8);
	for (unsigned i = 0; i < 3; i++) {
		frame(nram(a, TXB + i * 0x800), 64 + i, (uint8_t)i);
		txd(a, i, TXB + i * 0x800, (uint16_t)(64 + i), 0x09);
	}
	nwr(a, IMS, ICR_TXDW);
	nwr(a, TDT, 3);
	assert_int_equal(a->be->out_count, 0);                /* the loop never ran */
	e1000_quiesce(a->e);
	assert_int_equal(a->be->out_count, 3);
	assert_int_equal(nrd(a, TDH), 3);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(nram(a, TXR + i * 16)[12] & 1, 1);   /* DD written back */
	assert_true(a->line.level);
	e1000_resume_work(a->e);
	loop_run_once(l, 0);
	assert_int_equal(a->be->out_count, 3);
	e1000_detach(a->e);
	loop_free(l);
	nic_free(a);
}

/* A received frame waiting for descriptors travels in the snapshot. */
static void test_e1000_rx_pending(void **state)
{
	struct nic *a = nic_new(false, true), *b = nic_new(false, false);
	uint8_t in[600];
	struct blob bl;

	for (unsigned i = 0; i < 8; i++) {
		memset(nram(a, RXR + i * 16), 0, 16);
		put64(nram(a, RXR + i * 16), RXB + i * 256);
	}
	nwr(a, RDLEN, 8 * 16);
	nwr(a, RDBAL, (uint32_t)RXR);
	nwr(a, RDH, 0);
	nwr(a, RDT, 0);
	nwr(a, RCTL, (1u << 1) | (3u << 16) | (1u << 26));   /* EN, 256-byte buffers, strip the CRC */
	nwr(a, RDT, 2);                                     /* two buffers: too few for 600 bytes */
	frame(in, 600, 9);
	fb_push(a->be, in, 600);
	e1000_poll(a->e);
	assert_int_equal(a->be->in_count, 0);               /* read, held in the device */
	assert_int_equal(nrd(a, RDH), 0);

	bl = SAVE(e1000_save, a->e, E1000_SNAP_VERSION);
	memcpy(b->ram, a->ram, RAM_SIZE);
	LOAD_OK(e1000_load, b->e, &bl);
	nwr(b, IMS, ICR_RXT0);
	nwr(b, RDT, 7);
	assert_int_equal(nrd(b, RDH), 3);
	assert_memory_equal(nram(b, RXB), in, 256);
	assert_memory_equal(nram(b, RXB + 512), in + 512, 600 - 512);
	assert_int_equal(nram(b, RXR + 2 * 16 + 8)[0], 600 - 512);   /* last descriptor's length */
	assert_true(b->line.level);
	free(bl.p);
	nic_free(a);
	nic_free(b);
}

/* Offsets in the e1000 section (see e1000_save). */
#define E_PCI      4u                               /* cfg[] after the u32 size */
#define E_REGS     (4u + 4096u)
#define E_STATS    (E_REGS + 335u * 4)
#define E_EE       (E_STATS + 64u * 8 + 32u * 2 + 64u * 2)
#define E_IRQ      (E_EE + 12u)                      /* line, deferred, ever, since, left */
#define E_TXLEN    (E_IRQ + 19u + 4u + 32u + 18u)

static void test_e1000_refused(void **state)
{
	struct nic *a = nic_new(true, true), *b = nic_new(true, false);
	struct blob bl, bad;

	nwr(a, RDLEN, 8 * 16);
	nwr(a, RDH, 0x1234);
	assert_int_equal(nrd(a, RDH), 0x1234);
	bl = SAVE(e1000_save, a->e, E1000_SNAP_VERSION);
	/* Sanity of the offsets below: RDH is register word 25, RDLEN 24. */
	assert_int_equal(bl.p[E_REGS + 25 * 4], 0x34);
	assert_int_equal(bl.p[E_REGS + 24 * 4], 0x80);

	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_cut(&bl, bl.len - 1));
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_cut(&bl, E_REGS + 100));
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_cut(&bl, 1000));
	/* Somebody else's device: 1af4:1042. */
	bad = blob_poke(&bl, E_PCI + 0, 0xf4);
	bad.p[E_PCI + 1] = 0x1a;
	bad.p[E_PCI + 2] = 0x42;
	bad.p[E_PCI + 3] = 0x10;
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, bad);
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_poke(&bl, E_REGS + 25 * 4 + 2, 1));
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_poke(&bl, E_REGS + 24 * 4, 0x41));
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_poke(&bl, E_EE, 9));        /* ee_mode */
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_poke(&bl, E_EE + 2, 17));   /* bitpos */
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_poke(&bl, E_IRQ, 1));       /* no cause */
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_poke(&bl, E_IRQ + 3 + 7, 1));
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_poke(&bl, E_TXLEN + 2, 2)); /* > 64 KiB */
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, blob_poke(&bl, E_TXLEN + 4, 1)); /* RX frame, no bytes */
	bad = blob_cut(&bl, bl.len);
	bad.version = 7;
	REFUSED(e1000_save, e1000_load, E1000_SNAP_VERSION, b->e, bad);
	assert_int_equal(b->fm.routes_set, 0);
	assert_int_equal(ncfg(b, PCI_COMMAND, 2), 0);
	/* The untouched blob still loads. */
	LOAD_OK(e1000_load, b->e, &bl);
	assert_int_equal(nrd(b, RDH), 0x1234);
	free(bl.p);
	nic_free(a);
	nic_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uart_roundtrip),
		cmocka_unit_test(test_uart_refused),
		cmocka_unit_test(test_i8042_roundtrip),
		cmocka_unit_test(test_i8042_refused),
		cmocka_unit_test(test_rtc_roundtrip),
		cmocka_unit_test(test_rtc_refused),
		cmocka_unit_test(test_acpi_pm),
		cmocka_unit_test(test_pci_roundtrip),
		cmocka_unit_test(test_pci_refused),
		cmocka_unit_test(test_pci_host),
		cmocka_unit_test(test_e1000_roundtrip),
		cmocka_unit_test(test_e1000_intx_level),
		cmocka_unit_test(test_e1000_tx_pending),
		cmocka_unit_test(test_e1000_quiesce),
		cmocka_unit_test(test_e1000_rx_pending),
		cmocka_unit_test(test_e1000_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
