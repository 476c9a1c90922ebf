/*
 * virtio-pci transport and the virtio core, driven like a guest driver would:
 * config space through the PCI host, BARs on the MMIO bus, a fake MSI host
 * that records routes/irqfds/ioeventfds, and virtio-rng as the device.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "pci/pci.h"
#include "devices/virtio/rng.h"
#include "loop/loop.h"
#include "mem/layout.h"
#include "virtio/pci.h"
#include "vring_driver.h"
#include "fakes.h"

#define BAR0 0xc0000000ull
#define BAR2 0xc0010000ull
#define SLOT 1

static void intx_set(struct irq *irq, bool level)
{
}

static const struct irq_ops intx_ops = { .set_level = intx_set };

struct fx {
	struct bus pio, mmio;
	struct pci_host host;
	struct fake_msi fm;
	struct msi_host msi;
	struct loop *loop;
	struct vrd d;
	struct virtio_rng rng;
	struct virtio_pci vp;
};

static uint32_t cfg_rd(struct fx *f, unsigned off, unsigned size)
{
	return pci_host_cfg_read(&f->host, 0, SLOT, 0, off, size);
}

static void cfg_wr(struct fx *f, unsigned off, unsigned size, uint32_t v)
{
	pci_host_cfg_write(&f->host, 0, SLOT, 0, off, size, v);
}

static uint64_t mm_rd(struct fx *f, uint64_t a, unsigned size)
{
	uint64_t v;

	assert_int_equal(bus_read(&f->mmio, a, size, &v), 0);
	return v;
}

static void mm_wr(struct fx *f, uint64_t a, unsigned size, uint64_t v)
{
	assert_int_equal(bus_write(&f->mmio, a, size, v), 0);
}

static int setup(void **state)
{
	static struct fx f;

	memset(&f, 0, sizeof(f));
	assert_int_equal(bus_init(&f.pio, "pio"), 0);
	assert_int_equal(bus_init(&f.mmio, "mmio"), 0);
	assert_int_equal(pci_host_init(&f.host, &f.pio, &f.mmio, NULL), 0);
	f.fm.next_gsi = 24;
	f.msi = (struct msi_host){ &fake_msi_ops, &f.fm };
	f.loop = loop_new();
	assert_non_null(f.loop);
	assert_int_equal(vrd_init(&f.d, 16), 0);
	rng_init(&f.rng, &f.d.gm);
	assert_int_equal(virtio_pci_init(&f.vp, &f.rng.vdev, &f.msi, f.loop), 0);
	f.vp.intx = (struct irq){ .ops = &intx_ops };
	assert_int_equal(pci_host_add(&f.host, &f.vp.pci, 1), SLOT);
	/* What firmware or the guest kernel would do: place the BARs, enable memory decode. */
	cfg_wr(&f, PCI_BAR0, 4, (uint32_t)BAR0);
	cfg_wr(&f, PCI_BAR0 + 4, 4, 0);
	cfg_wr(&f, PCI_BAR0 + 8, 4, (uint32_t)BAR2);
	cfg_wr(&f, PCI_BAR0 + 12, 4, 0);
	cfg_wr(&f, PCI_COMMAND, 2, PCI_CMD_MEM | PCI_CMD_MASTER);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	virtio_pci_exit(&f->vp);
	loop_free(f->loop);
	vrd_exit(&f->d);
	pci_host_exit(&f->host);
	bus_exit(&f->pio);
	bus_exit(&f->mmio);
	return 0;
}

/* Offsets inside the common configuration structure. */
enum { DFSEL = 0, DF = 4, GFSEL = 8, GF = 0xc, MSIXCFG = 0x10, NUMQ = 0x12, STATUS = 0x14,
       QSEL = 0x16, QSIZE = 0x18, QMSIX = 0x1a, QEN = 0x1c, QNOFF = 0x1e, QDESC = 0x20,
       QAVAIL = 0x28, QUSED = 0x30 };

static unsigned find_msix_cap(struct fx *f)
{
	for (unsigned p = cfg_rd(f, PCI_CAP_PTR, 1); p; p = cfg_rd(f, p + 1, 1))
		if (cfg_rd(f, p, 1) == 0x11)
			return p;
	return 0;
}

/* The driver's side of bring-up, up to DRIVER_OK with queue 0 on MSI-X vector 1. */
static void bring_up(struct fx *f, bool msix)
{
	unsigned cap = find_msix_cap(f);

	mm_wr(f, BAR0 + STATUS, 1, 0);
	mm_wr(f, BAR0 + STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mm_wr(f, BAR0 + GFSEL, 4, 1);
	mm_wr(f, BAR0 + GF, 4, 1);                /* VERSION_1 */
	mm_wr(f, BAR0 + GFSEL, 4, 0);
	mm_wr(f, BAR0 + GF, 4, 0);
	mm_wr(f, BAR0 + STATUS, 1, 0x0b);
	assert_int_equal(mm_rd(f, BAR0 + STATUS, 1) & VIRTIO_STATUS_FEATURES_OK, VIRTIO_STATUS_FEATURES_OK);
	if (msix) {
		/* Table entries 0 (config) and 1 (queue), then MSI-X on. */
		for (unsigned v = 0; v < 2; v++) {
			mm_wr(f, BAR2 + v * 16, 4, 0xfee00000);
			mm_wr(f, BAR2 + v * 16 + 4, 4, 0);
			mm_wr(f, BAR2 + v * 16 + 8, 4, 0x40 + v);
			mm_wr(f, BAR2 + v * 16 + 12, 4, 0);
		}
		cfg_wr(f, cap + 2, 2, 0x8000);
		mm_wr(f, BAR0 + MSIXCFG, 2, 0);
	}
	mm_wr(f, BAR0 + QSEL, 2, 0);
	mm_wr(f, BAR0 + QSIZE, 2, f->d.size);
	mm_wr(f, BAR0 + QDESC, 4, (uint32_t)f->d.desc_gpa);
	mm_wr(f, BAR0 + QDESC + 4, 4, 0);
	mm_wr(f, BAR0 + QAVAIL, 8, f->d.avail_gpa);
	mm_wr(f, BAR0 + QUSED, 8, f->d.used_gpa);
	if (msix)
		mm_wr(f, BAR0 + QMSIX, 2, 1);
	mm_wr(f, BAR0 + QEN, 2, 1);
	mm_wr(f, BAR0 + STATUS, 1, 0x0f);
}

/* Post one 32-byte rng request and kick through the notify area. */
static uint16_t request(struct fx *f)
{
	struct vrd_buf b = vrd_buf_data(&f->d, NULL, 32, true);
	uint16_t head = vrd_add_chain(&f->d, &b, 1);

	vrd_publish(&f->d, head);
	mm_wr(f, BAR0 + VPCI_NOTIFY_OFF, 2, 0);
	/* The kick is an eventfd the I/O thread's loop reads. */
	assert_true(loop_run_once(f->loop, 1000) >= 1);
	return head;
}

static uint64_t drain(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

static void test_capabilities(void **state)
{
	struct fx *f = *state;
	unsigned types = 0, mult = 0;

	assert_int_equal(cfg_rd(f, 0, 4), 0x10441af4);   /* 1af4:1044 = modern virtio-rng */
	assert_int_equal(cfg_rd(f, PCI_REVISION, 1), 1);
	assert_true(cfg_rd(f, PCI_STATUS, 2) & PCI_STATUS_CAPS);
	for (unsigned p = cfg_rd(f, PCI_CAP_PTR, 1); p; p = cfg_rd(f, p + 1, 1)) {
		if (cfg_rd(f, p, 1) != 0x09)
			continue;
		types |= 1u << cfg_rd(f, p + 3, 1);
		assert_int_equal(cfg_rd(f, p + 4, 1), 0);           /* all in BAR 0 */
		if (cfg_rd(f, p + 3, 1) == 2)
			mult = cfg_rd(f, p + 16, 4);
	}
	assert_int_equal(types, 0x1e);                          /* common, notify, ISR, device */
	assert_int_equal(mult, VPCI_NOTIFY_MULT);
	assert_int_not_equal(find_msix_cap(f), 0);
	assert_int_equal(cfg_rd(f, find_msix_cap(f) + 2, 2) & 0x7ff, 1);   /* 2 vectors */
	/* BAR0 mapping registered the notify address as an ioeventfd. */
	assert_int_equal(f->fm.nioevent, 1);
	assert_int_equal(f->fm.ioevent_addr[0], BAR0 + VPCI_NOTIFY_OFF);
}

static void test_features_and_status(void **state)
{
	struct fx *f = *state;

	mm_wr(f, BAR0 + DFSEL, 4, 1);
	assert_true(mm_rd(f, BAR0 + DF, 4) & 1);                   /* VERSION_1 */
	mm_wr(f, BAR0 + DFSEL, 4, 0);
	assert_true(mm_rd(f, BAR0 + DF, 4) & (1u << VIRTIO_F_EVENT_IDX));
	assert_int_equal(mm_rd(f, BAR0 + NUMQ, 2), 1);
	/* A legacy driver (no VERSION_1) does not get FEATURES_OK. */
	mm_wr(f, BAR0 + STATUS, 1, 0x03);
	mm_wr(f, BAR0 + GFSEL, 4, 0);
	mm_wr(f, BAR0 + GF, 4, 1u << VIRTIO_F_EVENT_IDX);
	mm_wr(f, BAR0 + STATUS, 1, 0x0b);
	assert_int_equal(mm_rd(f, BAR0 + STATUS, 1), 0x03);
	/* Reset clears everything. */
	mm_wr(f, BAR0 + STATUS, 1, 0);
	assert_int_equal(mm_rd(f, BAR0 + STATUS, 1), 0);
	/* Features the device does not offer are refused too. */
	mm_wr(f, BAR0 + STATUS, 1, 0x03);
	mm_wr(f, BAR0 + GFSEL, 4, 1);
	mm_wr(f, BAR0 + GF, 4, 1 | (1u << 31));
	mm_wr(f, BAR0 + STATUS, 1, 0x0b);
	assert_int_equal(mm_rd(f, BAR0 + STATUS, 1) & VIRTIO_STATUS_FEATURES_OK, 0);
}

static void test_request_msix(void **state)
{
	struct fx *f = *state;
	uint32_t id, len;
	uint16_t head;

	bring_up(f, true);
	assert_int_equal(mm_rd(f, BAR0 + STATUS, 1), 0x0f);
	/* Vector 1 is routed as programmed and wired to an irqfd. */
	assert_int_equal(f->vp.vec_gsi[1] >= 24, 1);
	assert_int_equal(f->fm.route_addr[f->vp.vec_gsi[1]], 0xfee00000);
	assert_int_equal(f->fm.route_data[f->vp.vec_gsi[1]], 0x41);
	assert_int_equal(f->fm.route_irqfd[f->vp.vec_gsi[1]], f->vp.vec_fd[1]);
	head = request(f);
	assert_true(vrd_get_used(&f->d, &id, &len));
	assert_int_equal(id, head);
	assert_int_equal(len, 32);
	assert_int_equal(drain(f->vp.vec_fd[1]), 1);                 /* one MSI */
	assert_int_equal(f->rng.vdev.metrics.kicks, 1);
	assert_int_equal(f->rng.vdev.metrics.interrupts, 1);
	assert_int_equal(f->rng.bytes, 32);
}

static void test_masked_vector_pends(void **state)
{
	struct fx *f = *state;
	uint32_t id, len;

	bring_up(f, true);
	mm_wr(f, BAR2 + 16 + 12, 4, 1);                              /* mask vector 1 */
	request(f);
	assert_true(vrd_get_used(&f->d, &id, &len));
	assert_int_equal(drain(f->vp.vec_fd[1]), 0);                 /* nothing delivered */
	assert_int_equal(mm_rd(f, BAR2 + VPCI_MSIX_PBA_OFF, 8) & 2, 2);   /* pending bit */
	mm_wr(f, BAR2 + 16 + 12, 4, 0);                              /* unmask: delivered now */
	assert_int_equal(drain(f->vp.vec_fd[1]), 1);
	assert_int_equal(mm_rd(f, BAR2 + VPCI_MSIX_PBA_OFF, 8) & 2, 0);
	/* The function mask works the same way. */
	cfg_wr(f, find_msix_cap(f) + 2, 2, 0xc000);
	request(f);
	assert_int_equal(drain(f->vp.vec_fd[1]), 0);
	cfg_wr(f, find_msix_cap(f) + 2, 2, 0x8000);
	assert_int_equal(drain(f->vp.vec_fd[1]), 1);
}

static void test_intx_and_isr(void **state)
{
	struct fx *f = *state;
	uint32_t id, len;

	bring_up(f, false);
	request(f);
	assert_true(vrd_get_used(&f->d, &id, &len));
	assert_true(f->vp.intx.level);
	assert_int_equal(mm_rd(f, BAR0 + VPCI_ISR_OFF, 1), 1);       /* queue interrupt */
	assert_false(f->vp.intx.level);                              /* read-to-clear lowers it */
	assert_int_equal(mm_rd(f, BAR0 + VPCI_ISR_OFF, 1), 0);
}

static void test_bad_ring_needs_reset(void **state)
{
	struct fx *f = *state;

	mm_wr(f, BAR0 + STATUS, 1, 0x03);
	mm_wr(f, BAR0 + GFSEL, 4, 1);
	mm_wr(f, BAR0 + GF, 4, 1);
	mm_wr(f, BAR0 + STATUS, 1, 0x0b);
	mm_wr(f, BAR0 + QSEL, 2, 0);
	mm_wr(f, BAR0 + QDESC, 8, 0x7fff0000ull);                    /* not guest RAM */
	mm_wr(f, BAR0 + QAVAIL, 8, f->d.avail_gpa);
	mm_wr(f, BAR0 + QUSED, 8, f->d.used_gpa);
	mm_wr(f, BAR0 + QEN, 2, 1);
	mm_wr(f, BAR0 + STATUS, 1, 0x0f);
	assert_int_equal(mm_rd(f, BAR0 + STATUS, 1) & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_DRIVER_OK),
			 VIRTIO_STATUS_NEEDS_RESET);
	/* The driver cannot clear NEEDS_RESET except by resetting. */
	mm_wr(f, BAR0 + STATUS, 1, 0x0b);
	assert_true(mm_rd(f, BAR0 + STATUS, 1) & VIRTIO_STATUS_NEEDS_RESET);
	mm_wr(f, BAR0 + STATUS, 1, 0);
	assert_int_equal(mm_rd(f, BAR0 + STATUS, 1), 0);
}

static void test_hostile_registers(void **state)
{
	struct fx *f = *state;

	/* Vectors beyond the table read back as NO_VECTOR. */
	mm_wr(f, BAR0 + MSIXCFG, 2, 99);
	assert_int_equal(mm_rd(f, BAR0 + MSIXCFG, 2), VPCI_NO_VECTOR);
	/* A queue beyond num_queues reads as absent and ignores writes. */
	mm_wr(f, BAR0 + QSEL, 2, 7);
	mm_wr(f, BAR0 + QSIZE, 2, 8);
	mm_wr(f, BAR0 + QEN, 2, 1);
	assert_int_equal(mm_rd(f, BAR0 + QSIZE, 2), 0);
	assert_int_equal(mm_rd(f, BAR0 + QEN, 2), 0);
	/* Device config is empty for rng; the PBA is read-only; odd offsets are harmless. */
	assert_int_equal(mm_rd(f, BAR0 + VPCI_DEVICE_OFF, 4), 0);
	mm_wr(f, BAR2 + VPCI_MSIX_PBA_OFF, 8, ~0ull);
	assert_int_equal(mm_rd(f, BAR2 + VPCI_MSIX_PBA_OFF, 8), 0);
	mm_wr(f, BAR0 + 0x3ffc, 4, 0xffffffff);
	mm_wr(f, BAR2 + 0xff0, 8, ~0ull);
	/* A kick on a queue that is not running is counted and dropped. */
	mm_wr(f, BAR0 + VPCI_NOTIFY_OFF, 2, 0);
	loop_run_once(f->loop, 1000);
	assert_int_equal(f->rng.vdev.metrics.kicks, 1);
	assert_int_equal(f->rng.bytes, 0);
	/* Queue setup is frozen after enable. */
	bring_up(f, true);
	mm_wr(f, BAR0 + QSEL, 2, 0);
	mm_wr(f, BAR0 + QDESC, 8, 0x1234000);
	assert_int_equal(mm_rd(f, BAR0 + QDESC, 8), f->d.desc_gpa);
}

static void test_bar_move_moves_ioeventfd(void **state)
{
	struct fx *f = *state;

	cfg_wr(f, PCI_BAR0, 4, 0xc0100000);
	assert_int_equal(f->fm.nioevent, 2);
	assert_int_equal(f->fm.ioevent_addr[1], 0xc0100000ull + VPCI_NOTIFY_OFF);
	assert_int_equal(bus_read(&f->mmio, BAR0, 4, &(uint64_t){ 0 }), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_features_and_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_msix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_masked_vector_pends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intx_and_isr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_ring_needs_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_move_moves_ioeventfd, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
