/*
 * libFuzzer target: a hostile driver against the virtio-pci transport and
 * the virtio core. The input is guest RAM (rings and buffers) followed by a
 * program of config-space and BAR accesses, kicks and event-loop turns, run
 * against virtio-rng behind virtio-pci on a PCI host with a fake MSI host.
 * Anything that crashes, trips a sanitizer or breaks an invariant aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pci/pci.h"
#include "devices/virtio/rng.h"
#include "loop/loop.h"
#include "virtio/pci.h"
#include "mem/gm_test.h"

#include "fakes.h"

#define RAM_GPA  0x100000ull
#define RAM_SIZE 0x10000ull
#define BAR0     0xc0000000ull
#define BAR2     0xc0010000ull

static uint64_t take(const uint8_t **p, size_t *n, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < bytes && *n; i++, (*p)++, (*n)--)
		v |= (uint64_t)**p << (8 * i);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned sizes[] = { 1, 2, 4, 8 };
	struct fake_msi fm;
	struct msi_host msi;
	struct bus pio, mmio;
	struct pci_host host;
	struct guest_mem gm;
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	struct loop *loop = loop_new();
	uint8_t *ram = calloc(1, RAM_SIZE);
	size_t ram_len = size / 2 < RAM_SIZE ? size / 2 : RAM_SIZE;

	if (!rng || !vp || !loop || !ram)
		abort();
	/* GSIs 24.. like the VMM's; the transport must only touch routes it allocated. */
	fake_msi_init(&fm, 24, &msi);
	fm.max_routes = 64;
	fm.strict = true;
	memcpy(ram, data, ram_len);
	data += ram_len;
	size -= ram_len;
	gm_init_fake(&gm, RAM_GPA, ram, RAM_SIZE);
	if (bus_init(&pio, "pio") || bus_init(&mmio, "mmio") || pci_host_init(&host, &pio, &mmio, NULL))
		abort();   /* the harness's own set-up failed, not the input */
	rng_init(rng, &gm);
	if (virtio_pci_init(vp, &rng->vdev, &msi, loop) < 0)
		abort();
	if (pci_host_add(&host, &vp->pci, 1) != 1)
		abort();
	pci_host_cfg_write(&host, 0, 1, 0, PCI_BAR0, 4, (uint32_t)BAR0);
	pci_host_cfg_write(&host, 0, 1, 0, PCI_BAR0 + 8, 4, (uint32_t)BAR2);
	pci_host_cfg_write(&host, 0, 1, 0, PCI_COMMAND, 2, PCI_CMD_MEM);

	/* Each step: op, size index, offset (2 bytes), value (8 bytes). */
	for (unsigned steps = 0; size >= 4 && steps < 512; steps++) {
		unsigned op = (unsigned)take(&data, &size, 1);
		unsigned sz = sizes[take(&data, &size, 1) & 3];
		unsigned off = (unsigned)take(&data, &size, 2);
		uint64_t val = take(&data, &size, 8);
		uint64_t v;

		switch (op % 7) {
		case 0: /* common cfg, ISR, device cfg, notify */
			bus_write(&mmio, BAR0 + (off & 0x3fff), sz, val);
			break;
		case 1:
			bus_read(&mmio, BAR0 + (off & 0x3fff), sz, &v);
			break;
		case 2: /* MSI-X table and PBA */
			bus_write(&mmio, BAR2 + (off & 0xfff), sz, val);
			break;
		case 3:
			bus_read(&mmio, BAR2 + (off & 0xfff), sz, &v);
			break;
		case 4: /* config space, including the MSI-X capability and BARs */
			if (sz <= 4)
				pci_host_cfg_write(&host, 0, 1, 0, off & 0xfff, sz, (uint32_t)val);
			break;
		case 5:
			if (sz <= 4)
				(void)pci_host_cfg_read(&host, 0, 1, 0, off & 0xfff, sz);
			break;
		case 6: /* let the I/O thread's loop handle kicks */
			loop_run_once(loop, 0);
			break;
		}
		/* Invariants the driver can never break. */
		if (vp->config_vector != VPCI_NO_VECTOR && vp->config_vector >= vp->nvectors)
			abort();
		for (unsigned q = 0; q < rng->vdev.num_queues; q++) {
			uint16_t mv = rng->vdev.queues[q].msix_vector;

			if (mv != VPCI_NO_VECTOR && mv >= vp->nvectors)
				abort();
		}
	}
	virtio_reset(&rng->vdev);
	virtio_pci_exit(vp);
	loop_free(loop);
	pci_host_exit(&host);
	bus_exit(&pio);
	bus_exit(&mmio);
	free(ram);
	free(vp);
	free(rng);
	return 0;
}
