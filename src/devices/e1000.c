/*
 * Intel 82540EM (8254x family) gigabit Ethernet controller.
 *
 * The register model follows Intel's "PCI/PCI-X Family of Gigabit Ethernet
 * Controllers Software Developer's Manual" and what Linux's e1000 driver does
 * with an 82540: it probes the 64-word Microwire EEPROM by bit-banging EECD
 * (checksum 0xBABA, MAC in words 0-2), resets the MAC through the I/O BAR,
 * finds an M88E1011 PHY (id 0x01410C2x) at MDIO address 1, sets CTRL.SLU and
 * reads link/speed from the PHY and STATUS, then runs one transmit and one
 * receive ring of legacy receive descriptors, subtracting the 4-byte FCS the
 * hardware leaves at the end of each received frame.
 *
 * Transmit: a TDT write only records the tail and (with an I/O loop) wakes
 * the device's I/O thread, which walks TDH..TDT: context descriptors load the
 * offload context; legacy and data descriptors are gathered into one frame
 * (at most 64 KiB, copied out of guest memory once) until EOP; the frame gets
 * its checksums inserted (IXSM/TXSM, or a legacy IC) or is cut into MSS-sized
 * segments (TSE) with IP length/id/checksum and TCP sequence/flags/checksum
 * fixed per segment, and goes to the backend as plain frames (a zeroed
 * virtio-net header in front for backends that carry one). Doing it on the
 * I/O thread keeps every backend call on that thread (slirp is not
 * thread-safe) while the guest still pays one exit per TDT write. A frame the
 * backend refuses with -EAGAIN stays in the device buffer, the ring pauses,
 * and the backend fd's EPOLLOUT resumes it.
 *
 * Receive: the backend fd is polled only while RCTL.EN is set and the guest
 * has given descriptors; a frame is read, filtered (exact RAL/RAH, MTA hash,
 * broadcast, promiscuous, VLAN filter), its VLAN tag stripped with CTRL.VME,
 * padded to 60 bytes, given an FCS (unless RCTL.SECRC) and copied into as
 * many buffers as it needs. With too few descriptors it waits in the device
 * and nothing more is read: the backend keeps the traffic queued. Frames go
 * up with IXSM set, so the driver verifies checksums itself.
 *
 * Interrupts: ICR & IMS != 0 drives a level (INTx, or an MSI message on each
 * rising edge); reading ICR clears it. ITR sets a minimum interval between
 * rising edges, enforced with a timerfd on the I/O loop (or lazily on the
 * next register access without one). RDTR/RADV/TIDV/TADV are stored but
 * interrupts are not delayed by them.
 *
 * The guest is hostile: ring bases/lengths, head/tail, descriptor addresses
 * and lengths, offload offsets and register access sizes are all checked;
 * work per wake-up is bounded; nonsense is dropped, counted and logged
 * (rate-limited) and the device carries on.
 *
 * Locking: e->lock covers all device state. It is taken by vCPU threads (BAR
 * accesses), by the PCI host's config hook (with the host lock held: order
 * host -> e1000) and by the I/O thread. Under it the device only calls
 * irq_set_level(), MSI routes/eventfds, guest memory, the backend (I/O
 * thread or no loop) and epoll on its own fds: never back into the bus or
 * the PCI host.
 */
#include "devices/e1000.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "loop/loop.h"
#include "snapshot/snap.h"
#include "util/crc32.h"
#include "util/log.h"

#define E1000_TAG "e1000"

/* ---- registers (byte offsets in BAR0) ---- */

#define R_CTRL     0x0000
#define R_STATUS   0x0008
#define R_EECD     0x0010
#define R_EERD     0x0014
#define R_CTRL_EXT 0x0018
#define R_MDIC     0x0020
#define R_FCAL     0x0028
#define R_FCAH     0x002c
#define R_FCT      0x0030
#define R_VET      0x0038
#define R_ICR      0x00c0
#define R_ITR      0x00c4
#define R_ICS      0x00c8
#define R_IMS      0x00d0
#define R_IMC      0x00d8
#define R_RCTL     0x0100
#define R_FCTTV    0x0170
#define R_TXCW     0x0178
#define R_TCTL     0x0400
#define R_TIPG     0x0410
#define R_AIT      0x0458
#define R_LEDCTL   0x0e00
#define R_PBA      0x1000
#define R_FCRTL    0x2160
#define R_FCRTH    0x2168
#define R_RDBAL    0x2800
#define R_RDBAH    0x2804
#define R_RDLEN    0x2808
#define R_RDH      0x2810
#define R_RDT      0x2818
#define R_RDTR     0x2820
#define R_RXDCTL   0x2828
#define R_RADV     0x282c
#define R_RSRPD    0x2c00
#define R_TXDMAC   0x3000
#define R_TDBAL    0x3800
#define R_TDBAH    0x3804
#define R_TDLEN    0x3808
#define R_TDH      0x3810
#define R_TDT      0x3818
#define R_TIDV     0x3820
#define R_TXDCTL   0x3828
#define R_TADV     0x382c
#define R_TSPMT    0x3830
#define R_STATS    0x4000      /* 64 statistics registers, clear on read */
#define R_RXCSUM   0x5000
#define R_MTA      0x5200      /* 128 words */
#define R_RA       0x5400      /* 16 x (RAL, RAH) */
#define R_VFTA     0x5600      /* 128 words */
#define R_WUC      0x5800
#define R_WUFC     0x5808
#define R_WUS      0x5810
#define R_MANC     0x5820
#define R_IPAV     0x5838

#define CTRL_FD        (1u << 0)
#define CTRL_ASDE      (1u << 5)
#define CTRL_SLU       (1u << 6)
#define CTRL_SPEED_1000 (2u << 8)
#define CTRL_RST       (1u << 26)
#define CTRL_VME       (1u << 30)
#define CTRL_PHY_RST   (1u << 31)

#define STATUS_FD      (1u << 0)
#define STATUS_LU      (1u << 1)
#define STATUS_SPEED_1000 (2u << 6)
#define STATUS_ASDV_1000  (2u << 8)

#define EECD_SK        (1u << 0)
#define EECD_CS        (1u << 1)
#define EECD_DI        (1u << 2)
#define EECD_DO        (1u << 3)
#define EECD_FWE_MASK  (3u << 4)
#define EECD_FWE_DIS   (1u << 4)
#define EECD_REQ       (1u << 6)
#define EECD_GNT       (1u << 7)
#define EECD_PRES      (1u << 8)
#define EECD_WMASK     (EECD_SK | EECD_CS | EECD_DI | EECD_FWE_MASK | EECD_REQ)

#define EERD_START     (1u << 0)
#define EERD_DONE      (1u << 4)
#define EERD_ADDR_SHIFT 8
#define EERD_DATA_SHIFT 16

#define CTRL_EXT_EE_RST (1u << 13)

#define MDIC_DATA_MASK 0xffffu
#define MDIC_REG_SHIFT 16
#define MDIC_PHY_SHIFT 21
#define MDIC_OP_WRITE  (1u << 26)
#define MDIC_OP_READ   (2u << 26)
#define MDIC_READY     (1u << 28)
#define MDIC_INT_EN    (1u << 29)
#define MDIC_ERROR     (1u << 30)

#define ICR_TXDW       (1u << 0)
#define ICR_TXQE       (1u << 1)
#define ICR_LSC        (1u << 2)
#define ICR_RXDMT0     (1u << 4)
#define ICR_RXO        (1u << 6)
#define ICR_RXT0       (1u << 7)
#define ICR_MDAC       (1u << 9)
#define ICR_MASK       0x0001ffffu  /* causes an 82540 has (bits 0-16) */

#define RCTL_EN        (1u << 1)
#define RCTL_UPE       (1u << 3)
#define RCTL_MPE       (1u << 4)
#define RCTL_LPE       (1u << 5)
#define RCTL_RDMTS_SHIFT 8
#define RCTL_MO_SHIFT  12
#define RCTL_BAM       (1u << 15)
#define RCTL_BSIZE_SHIFT 16
#define RCTL_VFE       (1u << 18)
#define RCTL_BSEX      (1u << 25)
#define RCTL_SECRC     (1u << 26)

#define TCTL_EN        (1u << 1)
#define TCTL_PSP       (1u << 3)

#define RAH_AV         (1u << 31)
#define RAH_AS_MASK    (3u << 16)

/* Transmit descriptor command byte (legacy CMD, data DCMD, context TUCMD). */
#define TXD_EOP        0x01
#define TXD_IC         0x04   /* legacy: insert checksum */
#define TXD_TSE        0x04   /* data: segmentation */
#define TXD_RS         0x08
#define TXD_DEXT       0x20
#define TXD_VLE        0x40
#define TUCMD_TCP      0x01
#define TUCMD_IP       0x02
#define TXD_STA_DD     0x01
#define TXD_DTYP_CTX   0
#define TXD_DTYP_DATA  1
#define POPTS_IXSM     0x01
#define POPTS_TXSM     0x02

#define RXD_STA_DD     0x01
#define RXD_STA_EOP    0x02
#define RXD_STA_IXSM   0x04
#define RXD_STA_VP     0x08
#define RXD_ERR_RXE    0x80

/* Statistics register indexes ((offset - 0x4000) / 4). */
#define ST_MPC     4
#define ST_PRC64   23          /* PRC64..PRC1522: 23..28 */
#define ST_GPRC    29
#define ST_BPRC    30
#define ST_MPRC    31
#define ST_GPTC    32
#define ST_GORC    34          /* GORCL; GORCH is 35 */
#define ST_GOTC    36          /* GOTCL; GOTCH is 37 */
#define ST_RNBC    40
#define ST_ROC     43
#define ST_TOR     48          /* TORL; TORH is 49 */
#define ST_TOT     50          /* TOTL; TOTH is 51 */
#define ST_TPR     52
#define ST_TPT     53
#define ST_PTC64   54          /* PTC64..PTC1522: 54..59 */
#define ST_MPTC    60
#define ST_BPTC    61
#define ST_TSCTC   62
#define ST_TSCTFC  63
#define ST_COUNT   64

/* ---- PHY (M88E1011 as the 82540EM has it) ---- */

#define PHY_ADDR       1
#define PHY_BMCR       0x00
#define PHY_BMSR       0x01
#define PHY_ID1        0x02
#define PHY_ID2        0x03
#define PHY_ANAR       0x04
#define PHY_ANLPAR     0x05
#define PHY_ANER       0x06
#define PHY_GBCR       0x09
#define PHY_GBSR       0x0a
#define PHY_EXTSR      0x0f
#define PHY_PSCR       0x10
#define PHY_PSSR       0x11
#define PHY_IER        0x12
#define PHY_ISR        0x13
#define PHY_EPSCR      0x14
#define PHY_NREGS      32

#define BMCR_RESET     0x8000
#define BMCR_RESTART_AN 0x0200

/* ---- EEPROM ---- */

#define EE_WORDS       64
#define EE_ADDR_BITS   6
#define EE_OP_READ     0x6     /* Microwire: start bit 1, opcode 10 */
#define EE_SUM         0xbaba
#define EE_ICW1        0x0a
#define EE_SUBSYS_ID   0x0b
#define EE_SUBSYS_VEN  0x0c
#define EE_DEVICE_ID   0x0d
#define EE_VENDOR_ID   0x0e
#define EE_ICW2        0x0f
#define EE_ICW3_PORTA  0x24
#define EE_CHECKSUM    0x3f

/* ---- sizes and budgets ---- */

#define E1000_TX_MAX       65536u   /* one gathered frame (a TSO super-frame included) */
#define E1000_TSO_MAX_HDR  240u     /* headers TSO replicates */
#define E1000_TSO_MAX_SEGS 4096u
#define E1000_TX_BUDGET    512u     /* descriptors per wake-up on the I/O thread */
#define E1000_RX_BUDGET    256u     /* frames per wake-up */
#define E1000_RX_BUF_LEN   (NET_VNET_HDR_LEN + NET_MAX_FRAME + 64)
#define E1000_RX_MAX_STD   1522u    /* LPE off: longest frame, FCS included */
#define E1000_RX_MAX_LPE   16384u   /* LPE on */
#define E1000_RX_MAX_DESC  72u      /* E1000_RX_MAX_LPE + FCS over 256-byte buffers, rounded up */
#define E1000_MIN_FRAME    60u      /* without FCS */
#define ETH_HLEN           14u

#define MSI_CAP_LEN        14
#define MSI_CTRL_ENABLE    0x0001
#define MSI_CTRL_64BIT     0x0080

/* Work for the I/O thread. */
#define WORK_TX     (1u << 0)
#define WORK_RX     (1u << 1)
#define WORK_EVENTS (1u << 2)

struct e1000_regs {
	uint32_t ctrl, eecd, eerd, ctrl_ext, mdic, fcal, fcah, fct, vet, icr, itr, ims;
	uint32_t rctl, fcttv, txcw, tctl, tipg, ait, ledctl, pba, fcrtl, fcrth;
	uint32_t rdbal, rdbah, rdlen, rdh, rdt, rdtr, rxdctl, radv, rsrpd, txdmac;
	uint32_t tdbal, tdbah, tdlen, tdh, tdt, tidv, txdctl, tadv, tspmt;
	uint32_t rxcsum, wuc, wufc, wus, manc, ipav;
	uint32_t mta[128], ra[32], vfta[128];
	uint64_t stats[ST_COUNT];
};

/* The offload context the last context descriptor loaded. */
struct e1000_txctx {
	uint8_t ipcss, ipcso, tucss, tucso, tucmd, hdrlen;
	uint16_t ipcse, tucse, mss;
	uint32_t paylen;
};

enum e1000_ee_mode { EE_IDLE, EE_CMD, EE_READ, EE_IGNORE };

struct e1000 {
	struct pci_dev pci;
	const struct guest_mem *gm;
	const struct msi_host *msi;
	struct net_backend *be;
	struct irq *intx;
	uint8_t mac[6];

	pthread_mutex_t lock;
	struct e1000_regs r;
	uint16_t phy[PHY_NREGS];
	uint16_t eeprom[EE_WORDS];

	/* Microwire bit-banging through EECD. */
	enum e1000_ee_mode ee_mode;
	uint32_t ee_shift;
	unsigned ee_nbits, ee_bitpos;
	uint16_t ee_addr, ee_data;
	bool ee_do;

	/* PCI side, cached by the config hook. */
	bool bus_master, intx_off;
	unsigned msi_cap;             /* 0: none */
	bool msi_enabled;
	int msi_gsi, msi_fd;

	/* Interrupt line state. */
	bool line;                    /* ICR & IMS asserted (after ITR) */
	bool intx_level;              /* what the INTx pin is driven to */
	bool irq_deferred;            /* ITR holds a rising edge back */
	bool irq_ever;
	uint64_t last_irq_ns, deferred_until_ns;

	/* I/O bar */
	uint32_t ioaddr;

	/* Transmit. */
	struct e1000_txctx ctx;       /* current context */
	struct e1000_txctx tx_ctx;    /* the one the frame being gathered uses */
	uint8_t *tx_buf;
	size_t tx_len;
	bool tx_started, tx_bad;
	const char *tx_bad_why;       /* one of e1000_tx_bad_whys[] */
	bool tx_legacy, tx_tso;
	uint8_t tx_cmd, tx_eop_cmd, tx_popts, tx_css, tx_cso;
	uint16_t tx_special;
	bool tx_pending;              /* the frame in tx_buf waits for the backend */
	unsigned tx_next_seg;
	bool tx_more;                 /* a transmit batch was cut by its budget */

	/* Receive. */
	uint8_t *rx_buf;
	bool rx_pending;              /* a frame waits in rx_buf for descriptors */
	size_t rx_off, rx_len;        /* the frame (FCS included) in rx_buf */
	size_t rx_wire_len;           /* its length on the wire, for statistics */
	bool rx_vlan;
	uint16_t rx_tci;
	bool rx_blocked;              /* waiting for descriptors or a sane ring */
	bool rx_dead;                 /* the backend failed: stop reading it */

	/* I/O thread. */
	struct loop *loop;
	struct loop_work work_post;   /* runs e->work on the I/O thread */
	struct loop_timer itr_timer;  /* sends an ITR-deferred interrupt when due */
	uint32_t work;                /* WORK_* for the I/O thread (atomic) */
	uint32_t kick;                /* WORK_* gathered under the lock */
	uint32_t be_events;
	bool be_registered;

	struct e1000_stats stats;
	struct log_ratelimit rl;      /* guest misbehaviour */
	struct log_ratelimit rl_reg;  /* accesses to registers we do not have */
};

/* ---- little helpers ---- */

static uint16_t ld16le(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t ld32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64le(const uint8_t *p)
{
	return (uint64_t)ld32le(p) | (uint64_t)ld32le(p + 4) << 32;
}

static void st16le(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static uint16_t ld16be(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t ld32be(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void st16be(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void st32be(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * One's-complement sum of p[0, len) as big-endian 16-bit words, where p[0]
 * sits at byte offset `pos` of the checksummed range (odd: a low byte).
 */
static uint64_t csum_add(uint64_t sum, const uint8_t *p, size_t len, size_t pos)
{
	size_t i = 0;

	if (len && (pos & 1)) {
		sum += p[0];
		i = 1;
	}
	for (; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (i < len)
		sum += (uint32_t)p[i] << 8;
	return sum;
}

static uint16_t csum_fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* IEEE 802.3 FCS as it follows the frame on the wire (little-endian CRC-32). */
static uint32_t e1000_fcs(const struct e1000 *e, const uint8_t *p, size_t len)
{
	(void)e;
	return crc32_update(0, p, len);
}

/* ---- work for the I/O thread ---- */

/* Called with e->loop set: it only goes back to NULL with the loop stopped. */
static void e1000_schedule(struct e1000 *e, uint32_t work)
{
	__atomic_or_fetch(&e->work, work, __ATOMIC_ACQ_REL);
	loop_work_post(e->loop, &e->work_post);
}

static void e1000_do_work(struct e1000 *e, uint32_t work);

static void e1000_lock(struct e1000 *e)
{
	pthread_mutex_lock(&e->lock);
}

/*
 * Drop the lock. Work a register write asked for runs here: on the I/O
 * thread when there is one, otherwise inline (tests, fuzzing).
 */
static void e1000_unlock(struct e1000 *e)
{
	uint32_t work = e->kick;
	bool async = e->loop != NULL;

	e->kick = 0;
	if (work && !async)
		e1000_do_work(e, work);
	pthread_mutex_unlock(&e->lock);
	if (work && async)
		e1000_schedule(e, work | WORK_EVENTS);
}

/* ---- interrupts ---- */

static void e1000_intx_sync(struct e1000 *e)
{
	bool level = e->line && !e->msi_enabled && !e->intx_off;

	if (level == e->intx_level)
		return;
	e->intx_level = level;
	irq_set_level(e->intx, level);
}

static void e1000_msi_fire(struct e1000 *e)
{
	uint64_t one = 1;

	if (write(e->msi_fd, &one, sizeof(one)) < 0)
		log_guest(&e->rl, E1000_TAG, "MSI: eventfd write failed");
}

static void e1000_timer_arm(struct e1000 *e, uint64_t at_ns)
{
	loop_timer_arm_at(&e->itr_timer, at_ns, 0);
}

/* Re-evaluate ICR & IMS. Caller holds e->lock. */
static void e1000_update_irq(struct e1000 *e)
{
	uint64_t interval = (uint64_t)(e->r.itr & 0xffff) * 256, now;

	if (!(e->r.icr & e->r.ims)) {
		e->line = false;
		e->irq_deferred = false;
		e1000_intx_sync(e);
		return;
	}
	if (e->line)
		return;
	now = now_ns();
	if (interval && e->irq_ever && now - e->last_irq_ns < interval) {
		if (!e->irq_deferred) {
			e->irq_deferred = true;
			e->deferred_until_ns = e->last_irq_ns + interval;
			e->stats.irqs_throttled++;
			if (e->loop)
				e1000_timer_arm(e, e->deferred_until_ns);
		}
		return;
	}
	e->irq_deferred = false;
	e->line = true;
	e->irq_ever = true;
	e->last_irq_ns = now;
	e->stats.irqs++;
	if (e->msi_enabled)
		e1000_msi_fire(e);
	e1000_intx_sync(e);
}

static void e1000_raise(struct e1000 *e, uint32_t causes)
{
	e->r.icr |= causes;
	e1000_update_irq(e);
}

/* Without a timer on a loop, an ITR-deferred interrupt goes out at the next access. */
static void e1000_check_deferred(struct e1000 *e)
{
	if (e->irq_deferred && now_ns() >= e->deferred_until_ns) {
		e->irq_deferred = false;
		e1000_update_irq(e);
	}
}

/* ---- EEPROM ---- */

static void e1000_eeprom_init(struct e1000 *e)
{
	uint16_t *w = e->eeprom;
	uint16_t sum = 0;

	memset(w, 0, sizeof(e->eeprom));
	for (unsigned i = 0; i < 3; i++)
		w[i] = (uint16_t)(e->mac[2 * i] | e->mac[2 * i + 1] << 8);
	w[0x04] = 0xffff;               /* ID LED settings: "use the driver's default" */
	w[0x05] = 0x0200;               /* image version */
	/* ICW1: load vendor/device and subsystem ids, full duplex, valid signature. */
	w[EE_ICW1] = 0x4000 | 0x0400 | 0x0002 | 0x0001;
	w[EE_SUBSYS_ID] = E1000_SUBSYS_ID;
	w[EE_SUBSYS_VEN] = E1000_VENDOR_ID;
	w[EE_DEVICE_ID] = E1000_DEVICE_ID;
	w[EE_VENDOR_ID] = E1000_VENDOR_ID;
	w[EE_ICW2] = 0x0000;            /* no PAUSE advertised: flow control off */
	w[EE_ICW3_PORTA] = 0x0000;      /* no APM wake-up */
	for (unsigned i = 0; i < EE_CHECKSUM; i++)
		sum = (uint16_t)(sum + w[i]);
	w[EE_CHECKSUM] = (uint16_t)(EE_SUM - sum);
}

static void e1000_ee_reset(struct e1000 *e)
{
	e->ee_mode = EE_IDLE;
	e->ee_shift = 0;
	e->ee_nbits = 0;
	e->ee_do = true;   /* DO idles high: "ready" */
}

/* One rising SK edge with CS high. */
static void e1000_ee_clock(struct e1000 *e, bool di)
{
	switch (e->ee_mode) {
	case EE_CMD:
		if (e->ee_nbits == 0 && !di)
			return;   /* leading zeros before the start bit */
		e->ee_shift = e->ee_shift << 1 | di;
		if (++e->ee_nbits < 3 + EE_ADDR_BITS)
			return;
		if (((e->ee_shift >> EE_ADDR_BITS) & 7) == EE_OP_READ) {
			e->ee_addr = e->ee_shift & (EE_WORDS - 1);
			e->ee_data = e->eeprom[e->ee_addr];
			e->ee_bitpos = 16;
			e->ee_mode = EE_READ;
			e->ee_do = false;   /* the dummy zero before the data */
		} else {
			e->ee_mode = EE_IGNORE;   /* the EEPROM is read-only */
		}
		return;
	case EE_READ:
		if (e->ee_bitpos == 0) {
			/* Sequential read: the next word follows. */
			e->ee_addr = (e->ee_addr + 1) & (EE_WORDS - 1);
			e->ee_data = e->eeprom[e->ee_addr];
			e->ee_bitpos = 16;
		}
		e->ee_bitpos--;
		e->ee_do = (e->ee_data >> e->ee_bitpos) & 1;
		return;
	default:
		return;
	}
}

static void e1000_eecd_write(struct e1000 *e, uint32_t v)
{
	uint32_t old = e->r.eecd;

	e->r.eecd = v & EECD_WMASK;
	if (!(v & EECD_REQ) || !(v & EECD_CS)) {
		/* Not granted, or chip select low: the part is deselected. */
		e1000_ee_reset(e);
		return;
	}
	if (!(old & EECD_CS) || !(old & EECD_REQ)) {
		e1000_ee_reset(e);
		e->ee_mode = EE_CMD;
	}
	if ((v & EECD_SK) && !(old & EECD_SK))
		e1000_ee_clock(e, v & EECD_DI);
}

static uint32_t e1000_eecd_read(const struct e1000 *e)
{
	uint32_t v = e->r.eecd | EECD_PRES;

	if (v & EECD_REQ)
		v |= EECD_GNT;
	if (e->ee_do)
		v |= EECD_DO;
	return v;
}

static void e1000_eerd_write(struct e1000 *e, uint32_t v)
{
	unsigned addr = (v >> EERD_ADDR_SHIFT) & 0xff;
	uint16_t data = 0;

	if (!(v & EERD_START)) {
		e->r.eerd = v & (0xffu << EERD_ADDR_SHIFT);
		return;
	}
	if (addr < EE_WORDS)
		data = e->eeprom[addr];
	else
		log_guest(&e->rl, E1000_TAG, "EERD: word %u is beyond the %u-word EEPROM", addr, EE_WORDS);
	e->r.eerd = (uint32_t)data << EERD_DATA_SHIFT | addr << EERD_ADDR_SHIFT | EERD_DONE;
}

/* ---- PHY ---- */

static void e1000_phy_reset(struct e1000 *e)
{
	static const uint16_t init[PHY_NREGS] = {
		[PHY_BMCR] = 0x1140,    /* autoneg on, full duplex, 1000 Mb/s */
		[PHY_BMSR] = 0x796d,    /* link up, autoneg complete, 10/100/1000 capable */
		[PHY_ID1] = 0x0141,
		[PHY_ID2] = 0x0c20,     /* M88E1011, revision 0 */
		[PHY_ANAR] = 0x0de1,
		[PHY_ANLPAR] = 0x41e1,  /* partner: 10/100 half/full, acknowledged */
		[PHY_ANER] = 0x0001,
		[PHY_GBCR] = 0x0300,
		[PHY_GBSR] = 0x3c00,    /* local/remote receiver ok, partner 1000 half/full */
		[PHY_EXTSR] = 0x3000,
		[PHY_PSCR] = 0x0068,
		[PHY_PSSR] = 0xac00,    /* 1000 Mb/s, full duplex, resolved, link up */
		[PHY_EPSCR] = 0x0c60,
	};

	memcpy(e->phy, init, sizeof(e->phy));
}

static bool e1000_phy_writable(unsigned reg)
{
	switch (reg) {
	case PHY_BMCR: case PHY_ANAR: case PHY_GBCR: case PHY_PSCR: case PHY_IER: case PHY_EPSCR:
	case 0x16: case 0x18: case 0x19: case 0x1a: case 0x1d: case 0x1e:
		return true;
	default:
		return false;
	}
}

/*
 * A software reset (BMCR bit 15) only applies the configuration written
 * before it, as on the M88 (the driver writes PSCR/EPSCR, then resets);
 * CTRL.PHY_RST is the hardware reset that restores the defaults.
 */
static void e1000_phy_write(struct e1000 *e, unsigned reg, uint16_t v)
{
	if (!e1000_phy_writable(reg))
		return;
	if (reg == PHY_BMCR)
		v &= (uint16_t)~(BMCR_RESET | BMCR_RESTART_AN);   /* both complete at once */
	e->phy[reg] = v;
}

static void e1000_mdic_write(struct e1000 *e, uint32_t v)
{
	unsigned phy = (v >> MDIC_PHY_SHIFT) & 0x1f, reg = (v >> MDIC_REG_SHIFT) & 0x1f;
	uint32_t op = v & (3u << 26);
	uint32_t res = v & ~(MDIC_READY | MDIC_ERROR);

	if (phy != PHY_ADDR || (op != MDIC_OP_READ && op != MDIC_OP_WRITE)) {
		res |= MDIC_ERROR;
	} else if (op == MDIC_OP_READ) {
		uint16_t data = e->phy[reg];

		if (reg == PHY_ISR)
			e->phy[reg] = 0;
		res = (res & ~MDIC_DATA_MASK) | data;
	} else {
		e1000_phy_write(e, reg, (uint16_t)v);
	}
	e->r.mdic = res | MDIC_READY;
	if (v & MDIC_INT_EN)
		e1000_raise(e, ICR_MDAC);
}

/* ---- reset and link ---- */

static bool e1000_link_up(const struct e1000 *e)
{
	return e->r.ctrl & CTRL_SLU;
}

static uint32_t e1000_status(const struct e1000 *e)
{
	uint32_t v = STATUS_FD | STATUS_SPEED_1000 | STATUS_ASDV_1000;

	if (e1000_link_up(e))
		v |= STATUS_LU;
	return v;
}

static void e1000_ra_default(struct e1000 *e)
{
	e->r.ra[0] = ld32le(e->mac);
	e->r.ra[1] = ld16le(e->mac + 4) | RAH_AV;
}

static void e1000_tx_frame_reset(struct e1000 *e)
{
	e->tx_len = 0;
	e->tx_started = false;
	e->tx_bad = false;
	e->tx_pending = false;
	e->tx_next_seg = 0;
}

/* CTRL.RST: every MAC register back to its power-on value; the PHY keeps its state. */
static void e1000_mac_reset(struct e1000 *e)
{
	if (e->rx_pending)
		e->stats.rx_dropped++;
	memset(&e->r, 0, sizeof(e->r));
	e->r.ctrl = CTRL_FD | CTRL_ASDE | CTRL_SPEED_1000;
	e->r.eecd = EECD_FWE_DIS;
	e->r.pba = 0x30;           /* 48 KiB receive, 16 KiB transmit */
	e->r.vet = 0x8100;
	e->r.ledctl = 0x07068302;
	e1000_ra_default(e);
	e1000_ee_reset(e);
	memset(&e->ctx, 0, sizeof(e->ctx));
	e1000_tx_frame_reset(e);
	e->tx_more = false;
	e->rx_pending = false;
	e->rx_blocked = false;
	e->irq_deferred = false;
	e1000_update_irq(e);
}

/* ---- rings ---- */

/* Where a ring is, if it is usable now. Logs (rate-limited) when it is not. */
static bool e1000_ring(struct e1000 *e, const char *name, uint32_t bal, uint32_t bah, uint32_t len,
		       uint32_t head, uint32_t tail, uint64_t *base, uint32_t *count)
{
	*base = (uint64_t)bah << 32 | (bal & ~0xfu);
	*count = len / 16;
	if (*count == 0)
		return false;   /* not set up yet */
	if (!gm_is_ram(e->gm, *base, len)) {
		log_guest(&e->rl, E1000_TAG, "%s ring at %#llx (%u bytes) is not in guest RAM", name,
			  (unsigned long long)*base, len);
		return false;
	}
	if (head >= *count || tail >= *count) {
		log_guest(&e->rl, E1000_TAG, "%s head %u or tail %u beyond the ring's %u descriptors", name,
			  head, tail, *count);
		return false;
	}
	return true;
}

static void e1000_size_bin(struct e1000 *e, unsigned first, size_t wire_len)
{
	unsigned bin;

	if (wire_len <= 64)
		bin = 0;
	else if (wire_len <= 127)
		bin = 1;
	else if (wire_len <= 255)
		bin = 2;
	else if (wire_len <= 511)
		bin = 3;
	else if (wire_len <= 1023)
		bin = 4;
	else if (wire_len <= 1522)
		bin = 5;
	else
		return;
	e->r.stats[first + bin]++;
}

/* ---- transmit ---- */

static void e1000_tx_drop(struct e1000 *e, const char *why, size_t len)
{
	e->stats.tx_dropped++;
	log_guest(&e->rl, E1000_TAG, "dropping a %zu-byte transmit frame: %s", len, why);
}

/*
 * Hand one frame to the backend: `a` (at least an Ethernet header's worth of
 * MAC addresses) then `b`, with the VLAN tag inserted after the addresses
 * when asked and short frames padded. Returns what the backend returned.
 */
static ssize_t e1000_tx_send(struct e1000 *e, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	static const uint8_t zeros[E1000_MIN_FRAME];
	struct iovec iov[6];
	uint8_t tag[4];
	bool vlan = (e->tx_eop_cmd & TXD_VLE) && (e->r.ctrl & CTRL_VME);
	size_t len = alen + blen + (vlan ? 4 : 0), pad = 0;
	const uint8_t *dst = a;
	int n = 0;
	ssize_t rc;

	if (e->be->vnet_hdr) {
		iov[n].iov_base = (void *)zeros;
		iov[n++].iov_len = NET_VNET_HDR_LEN;
	}
	if (vlan) {
		st16be(tag, (uint16_t)e->r.vet);
		st16be(tag + 2, e->tx_special);
		iov[n].iov_base = (void *)a;
		iov[n++].iov_len = 12;
		iov[n].iov_base = tag;
		iov[n++].iov_len = 4;
		iov[n].iov_base = (void *)(a + 12);
		iov[n++].iov_len = alen - 12;
	} else {
		iov[n].iov_base = (void *)a;
		iov[n++].iov_len = alen;
	}
	if (blen) {
		iov[n].iov_base = (void *)b;
		iov[n++].iov_len = blen;
	}
	if (len < E1000_MIN_FRAME && (e->r.tctl & TCTL_PSP)) {
		pad = E1000_MIN_FRAME - len;
		iov[n].iov_base = (void *)zeros;
		iov[n++].iov_len = pad;
	}
	rc = net_backend_send(e->be, iov, n);
	if (rc == -EAGAIN)
		return rc;
	if (rc < 0) {
		e1000_tx_drop(e, strerror((int)-rc), len);
		return rc;
	}
	len += pad;
	e->stats.tx_packets++;
	e->stats.tx_bytes += len;
	e->r.stats[ST_GPTC]++;
	e->r.stats[ST_TPT]++;
	e->r.stats[ST_GOTC] += len + 4;
	e->r.stats[ST_TOT] += len + 4;
	if (dst[0] & 1)
		e->r.stats[memcmp(dst, "\xff\xff\xff\xff\xff\xff", 6) ? ST_MPTC : ST_BPTC]++;
	e1000_size_bin(e, ST_PTC64, len + 4);
	return rc;
}

/*
 * Put the one's-complement checksum of p[start, end] (end inclusive; 0 means
 * the end of the frame) at p[at]. false when the offsets make no sense.
 */
static bool e1000_csum_insert(uint8_t *p, size_t len, unsigned start, unsigned end, unsigned at, bool l4)
{
	size_t stop = end ? (size_t)end + 1 : len;
	uint16_t c;

	if (stop > len)
		stop = len;
	if (start >= stop || (size_t)at + 2 > len)
		return false;
	c = (uint16_t)~csum_fold(csum_add(0, p + start, stop - start, 0));
	if (l4 && c == 0)
		c = 0xffff;   /* 0 would mean "no checksum" to UDP */
	st16be(p + at, c);
	return true;
}

/* TSO: is the context consistent with the frame? NULL if so, else why not. */
static const char *e1000_tso_check(size_t tx_len, uint8_t popts, const struct e1000_txctx *c)
{
	bool ipv4 = c->tucmd & TUCMD_IP, tcp = c->tucmd & TUCMD_TCP;
	unsigned h = c->hdrlen;

	if (h < ETH_HLEN || h > E1000_TSO_MAX_HDR)
		return "TSO header length out of range";
	if (h > tx_len)
		return "TSO header longer than the frame";
	if (c->mss == 0)
		return "TSO with MSS 0";
	if ((unsigned)c->ipcss + (ipv4 ? 20u : 40u) > h)
		return "TSO IP header outside the header";
	if ((unsigned)c->tucss + (tcp ? 20u : 8u) > h || c->tucss < c->ipcss)
		return "TSO TCP/UDP header outside the header";
	if ((popts & POPTS_IXSM) && (!ipv4 || (unsigned)c->ipcso + 2 > h))
		return "TSO IP checksum offset outside the header";
	if ((popts & POPTS_TXSM) && (unsigned)c->tucso + 2 > h)
		return "TSO TCP/UDP checksum offset outside the header";
	if (tx_len - h > (size_t)E1000_TSO_MAX_SEGS * c->mss)
		return "TSO needs too many segments";
	return NULL;
}

/* Segment tx_buf from segment tx_next_seg on. 0, or -EAGAIN (resume later at tx_next_seg). */
static int e1000_tx_tso(struct e1000 *e)
{
	const struct e1000_txctx *c = &e->tx_ctx;
	bool ipv4 = c->tucmd & TUCMD_IP, tcp = c->tucmd & TUCMD_TCP;
	size_t h = c->hdrlen, payload = e->tx_len - h;
	unsigned nsegs = payload ? (unsigned)((payload + c->mss - 1) / c->mss) : 1;
	uint32_t seq0 = tcp ? ld32be(e->tx_buf + c->tucss + 4) : 0;
	uint16_t id0 = ipv4 ? ld16be(e->tx_buf + c->ipcss + 4) : 0;
	uint8_t hdr[E1000_TSO_MAX_HDR];

	for (unsigned s = e->tx_next_seg; s < nsegs; s++) {
		size_t off = (size_t)s * c->mss;
		size_t plen = payload - off < c->mss ? payload - off : c->mss;
		size_t seglen = h + plen;
		const uint8_t *data = e->tx_buf + h + off;
		ssize_t rc;

		memcpy(hdr, e->tx_buf, h);
		if (ipv4) {
			st16be(hdr + c->ipcss + 2, (uint16_t)(seglen - c->ipcss));
			st16be(hdr + c->ipcss + 4, (uint16_t)(id0 + s));
		} else {
			st16be(hdr + c->ipcss + 4, (uint16_t)(seglen - c->ipcss - 40));
		}
		if (tcp) {
			st32be(hdr + c->tucss + 4, seq0 + (uint32_t)off);
			if (s + 1 < nsegs)
				hdr[c->tucss + 13] &= (uint8_t)~0x09;   /* FIN and PSH: last segment only */
		} else {
			st16be(hdr + c->tucss + 4, (uint16_t)(seglen - c->tucss));
		}
		if ((e->tx_popts & POPTS_IXSM) && ipv4) {
			size_t end = c->ipcse ? (size_t)c->ipcse + 1 : h;

			if (end > h)
				end = h;
			st16be(hdr + c->ipcso, 0);
			if (end > c->ipcss)
				st16be(hdr + c->ipcso,
				       (uint16_t)~csum_fold(csum_add(0, hdr + c->ipcss, end - c->ipcss, 0)));
		}
		if (e->tx_popts & POPTS_TXSM) {
			/* The field holds the pseudo-header sum without the length; add it. */
			uint64_t sum = csum_add(0, hdr + c->tucss, h - c->tucss, 0);
			uint16_t cs;

			sum = csum_add(sum, data, plen, h - c->tucss);
			sum += (uint16_t)(seglen - c->tucss);
			cs = (uint16_t)~csum_fold(sum);
			st16be(hdr + c->tucso, cs ? cs : 0xffff);
		}
		rc = e1000_tx_send(e, hdr, h, data, plen);
		if (rc == -EAGAIN) {
			e->tx_next_seg = s;
			return -EAGAIN;
		}
	}
	e->r.stats[ST_TSCTC]++;
	e->stats.tx_tso++;
	return 0;
}

/* Send the frame in tx_buf (offloads applied). 0 or -EAGAIN. */
static int e1000_tx_emit(struct e1000 *e)
{
	if (e->tx_tso)
		return e1000_tx_tso(e);
	return e1000_tx_send(e, e->tx_buf, e->tx_len, NULL, 0) == -EAGAIN ? -EAGAIN : 0;
}

/* A whole frame was gathered (EOP). */
static void e1000_tx_frame(struct e1000 *e)
{
	const struct e1000_txctx *c = &e->tx_ctx;
	const char *why;

	e->tx_next_seg = 0;
	if (e->tx_len < ETH_HLEN) {
		e1000_tx_drop(e, "shorter than an Ethernet header", e->tx_len);
		e->tx_len = 0;
		return;
	}
	if (e->tx_tso) {
		why = e1000_tso_check(e->tx_len, e->tx_popts, c);
		if (why) {
			e->r.stats[ST_TSCTFC]++;
			e1000_tx_drop(e, why, e->tx_len);
			e->tx_len = 0;
			return;
		}
	} else if (e->tx_legacy) {
		if ((e->tx_cmd & TXD_IC) && !e1000_csum_insert(e->tx_buf, e->tx_len, e->tx_css, 0, e->tx_cso, true))
			log_guest(&e->rl, E1000_TAG, "legacy checksum offsets %u/%u outside a %zu-byte frame",
				  e->tx_css, e->tx_cso, e->tx_len);
	} else {
		/* IP first: a TCP/UDP checksum over a range that includes it then sees the final value. */
		if ((e->tx_popts & POPTS_IXSM) &&
		    !e1000_csum_insert(e->tx_buf, e->tx_len, c->ipcss, c->ipcse, c->ipcso, false))
			log_guest(&e->rl, E1000_TAG, "IP checksum offsets outside a %zu-byte frame", e->tx_len);
		if ((e->tx_popts & POPTS_TXSM) &&
		    !e1000_csum_insert(e->tx_buf, e->tx_len, c->tucss, c->tucse, c->tucso, true))
			log_guest(&e->rl, E1000_TAG, "TCP/UDP checksum offsets outside a %zu-byte frame", e->tx_len);
	}
	if (e1000_tx_emit(e) == -EAGAIN) {
		e->tx_pending = true;
		return;
	}
	e->tx_len = 0;
}

/* Retry what the backend refused. true when nothing waits any more. */
static bool e1000_tx_flush(struct e1000 *e)
{
	if (!e->tx_pending)
		return true;
	if (e1000_tx_emit(e) == -EAGAIN)
		return false;
	e->tx_pending = false;
	e->tx_len = 0;
	return true;
}

static void e1000_tx_context(struct e1000 *e, const uint8_t *d)
{
	struct e1000_txctx *c = &e->ctx;

	c->ipcss = d[0];
	c->ipcso = d[1];
	c->ipcse = ld16le(d + 2);
	c->tucss = d[4];
	c->tucso = d[5];
	c->tucse = ld16le(d + 6);
	c->paylen = ld32le(d + 8) & 0xfffff;
	c->tucmd = d[11];
	c->hdrlen = d[13];
	c->mss = ld16le(d + 14);
}

/* Why a frame being gathered will be dropped at EOP; the index is what a snapshot saves. */
enum { TX_BAD_NONE, TX_BAD_LONG, TX_BAD_RAM, TX_BAD_COUNT };
static const char *const e1000_tx_bad_whys[TX_BAD_COUNT] = {
	[TX_BAD_NONE] = "malformed",
	[TX_BAD_LONG] = "longer than 64 KiB",
	[TX_BAD_RAM] = "buffer outside guest RAM",
};

/* One legacy or data descriptor: append its buffer, finish the frame at EOP. */
static void e1000_tx_data(struct e1000 *e, const uint8_t *d, bool ext)
{
	uint64_t addr = ld64le(d);
	uint32_t len = ext ? ld32le(d + 8) & 0xfffff : ld16le(d + 8);
	uint8_t cmd = d[11];

	if (!e->tx_started) {
		e->tx_started = true;
		e->tx_bad = false;
		e->tx_len = 0;
		e->tx_legacy = !ext;
		e->tx_cmd = cmd;
		e->tx_cso = d[10];
		e->tx_css = d[13];
		e->tx_popts = ext ? d[13] : 0;
		e->tx_tso = ext && (cmd & TXD_TSE);
		e->tx_ctx = e->ctx;
	}
	if (!e->tx_bad && len) {
		if (len > E1000_TX_MAX - e->tx_len) {
			e->tx_bad = true;
			e->tx_bad_why = e1000_tx_bad_whys[TX_BAD_LONG];
		} else if (gm_read(e->gm, addr, e->tx_buf + e->tx_len, len) < 0) {
			e->tx_bad = true;
			e->tx_bad_why = e1000_tx_bad_whys[TX_BAD_RAM];
		} else {
			e->tx_len += len;
		}
	}
	if (!(cmd & TXD_EOP))
		return;
	e->tx_started = false;
	e->tx_eop_cmd = cmd;
	e->tx_special = ld16le(d + 14);
	if (e->tx_bad) {
		e1000_tx_drop(e, e->tx_bad_why, e->tx_len);
		e->tx_len = 0;
		e->tx_bad = false;
		return;
	}
	e1000_tx_frame(e);
}

/*
 * Walk TDH..TDT, at most `budget` descriptors (and never more than the ring
 * holds). Caller holds e->lock.
 */
static void e1000_tx(struct e1000 *e, unsigned budget)
{
	uint64_t base;
	uint32_t count;
	unsigned done = 0;
	bool wrote_back = false;

	e->tx_more = false;
	if (!(e->r.tctl & TCTL_EN) || !e->bus_master)
		return;
	if (!e1000_tx_flush(e))
		return;   /* EPOLLOUT on the backend resumes us */
	if (!e1000_ring(e, "transmit", e->r.tdbal, e->r.tdbah, e->r.tdlen, e->r.tdh, e->r.tdt, &base, &count))
		return;
	if (budget > count)
		budget = count;
	while (e->r.tdh != e->r.tdt) {
		uint64_t gpa = base + (uint64_t)e->r.tdh * 16;
		uint8_t d[16];
		uint8_t cmd;

		if (done == budget) {
			e->tx_more = true;
			break;
		}
		if (gm_read(e->gm, gpa, d, sizeof(d)) < 0)
			break;   /* cannot happen: the ring was checked to be RAM */
		cmd = d[11];
		if (cmd & TXD_DEXT) {
			unsigned dtyp = (ld32le(d + 8) >> 20) & 0xf;

			if (dtyp == TXD_DTYP_CTX)
				e1000_tx_context(e, d);
			else if (dtyp == TXD_DTYP_DATA)
				e1000_tx_data(e, d, true);
			else
				log_guest(&e->rl, E1000_TAG, "transmit descriptor %u has type %u", e->r.tdh, dtyp);
		} else {
			e1000_tx_data(e, d, false);
		}
		if (cmd & TXD_RS) {
			uint8_t sta = (uint8_t)(d[12] | TXD_STA_DD);

			__atomic_thread_fence(__ATOMIC_RELEASE);
			gm_write(e->gm, gpa + 12, &sta, 1);
			wrote_back = true;
		}
		e->r.tdh = (e->r.tdh + 1) % count;
		done++;
		if (e->tx_pending)
			break;
	}
	if (!done)
		return;
	e->r.icr |= wrote_back ? ICR_TXDW : 0;
	if (e->r.tdh == e->r.tdt)
		e->r.icr |= ICR_TXQE;
	e1000_update_irq(e);
}

/* ---- receive ---- */

static unsigned e1000_rx_bufsize(uint32_t rctl)
{
	static const unsigned std[4] = { 2048, 1024, 512, 256 };
	static const unsigned ext[4] = { 2048, 16384, 8192, 4096 };   /* BSEX with 00 is reserved */
	unsigned sz = (rctl >> RCTL_BSIZE_SHIFT) & 3;

	return (rctl & RCTL_BSEX) ? ext[sz] : std[sz];
}

static bool e1000_mta_match(const struct e1000 *e, const uint8_t *dst)
{
	unsigned mo = (e->r.rctl >> RCTL_MO_SHIFT) & 3;
	unsigned h;

	switch (mo) {
	case 0: h = (unsigned)(dst[4] >> 4 | dst[5] << 4); break;   /* address bits 47:36 */
	case 1: h = (unsigned)(dst[4] >> 3 | dst[5] << 5); break;   /* 46:35 */
	case 2: h = (unsigned)(dst[4] >> 2 | dst[5] << 6); break;   /* 45:34 */
	default: h = (unsigned)(dst[4] | dst[5] << 8); break;       /* 43:32 */
	}
	h &= 0xfff;
	return e->r.mta[h >> 5] & (1u << (h & 31));
}

/* Is this frame for us? (address filters, then the VLAN filter) */
static bool e1000_rx_accept(const struct e1000 *e, const uint8_t *f, size_t len)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint32_t rctl = e->r.rctl;
	bool ok = false;

	if ((rctl & RCTL_VFE) && len >= 18 && ld16be(f + 12) == (uint16_t)e->r.vet) {
		unsigned vid = ld16be(f + 14) & 0xfff;

		if (!(e->r.vfta[vid >> 5] & (1u << (vid & 31))))
			return false;
	}
	if (!memcmp(f, bcast, 6))
		return (rctl & (RCTL_BAM | RCTL_MPE)) != 0;
	if (f[0] & 1) {
		if (rctl & RCTL_MPE)
			return true;
	} else if (rctl & RCTL_UPE) {
		return true;
	}
	for (unsigned i = 0; i < 16 && !ok; i++) {
		uint32_t lo = e->r.ra[2 * i], hi = e->r.ra[2 * i + 1];

		if (!(hi & RAH_AV) || (hi & RAH_AS_MASK))
			continue;   /* invalid, or a source-address filter */
		ok = ld32le(f) == lo && ld16le(f + 4) == (uint16_t)hi;
	}
	if (!ok && (f[0] & 1))
		ok = e1000_mta_match(e, f);
	return ok;
}

static bool e1000_rx_can_read(const struct e1000 *e)
{
	return (e->r.rctl & RCTL_EN) && e->bus_master && !e->rx_dead;
}

/* Complete a partial checksum the backend left (VIRTIO_NET_HDR_F_NEEDS_CSUM). */
static bool e1000_rx_fix_csum(uint8_t *f, size_t len, const uint8_t *vh)
{
	unsigned start = ld16le(vh + 6), off = ld16le(vh + 8);

	if ((size_t)start + off + 2 > len)
		return false;
	return e1000_csum_insert(f, len, start, 0, start + off, true);
}

/*
 * Read the next frame from the backend into rx_buf and make it what the
 * guest will see. 1: one is pending, 2: one was read and discarded,
 * 0: none waiting, -1: the backend failed.
 */
static int e1000_rx_read(struct e1000 *e)
{
	size_t hdr = e->be->vnet_hdr ? NET_VNET_HDR_LEN : 0, len, max;
	uint8_t *f;
	ssize_t rc;

	rc = net_backend_recv(e->be, e->rx_buf, E1000_RX_BUF_LEN - 64);
	if (rc == -EAGAIN || rc == -EINTR)
		return 0;
	if (rc < 0) {
		e->stats.rx_dropped++;
		if (rc == -EMSGSIZE || rc == -ENOBUFS)
			return 2;
		log_err(E1000_TAG, "%s backend: receive failed: %s; no longer receiving", e->be->kind,
			strerror((int)-rc));
		e->rx_dead = true;
		return -1;
	}
	if ((size_t)rc < hdr + ETH_HLEN) {
		e->stats.rx_dropped++;
		return 2;
	}
	f = e->rx_buf + hdr;
	len = (size_t)rc - hdr;
	e->r.stats[ST_TPR]++;
	e->r.stats[ST_TOR] += len + 4;
	if (hdr) {
		/* No offloads were enabled: a segmented frame cannot be delivered. */
		if (e->rx_buf[1] != 0 || ((e->rx_buf[0] & 1) && !e1000_rx_fix_csum(f, len, e->rx_buf))) {
			e->stats.rx_dropped++;
			log_guest(&e->rl, E1000_TAG, "%s backend: dropping a frame with offloads", e->be->kind);
			return 2;
		}
	}
	if (!e1000_rx_accept(e, f, len)) {
		e->stats.rx_filtered++;
		return 2;
	}
	max = (e->r.rctl & RCTL_LPE) ? E1000_RX_MAX_LPE : E1000_RX_MAX_STD;
	if (len + 4 > max) {
		e->r.stats[ST_ROC]++;
		e->stats.rx_dropped++;
		return 2;
	}
	e->rx_wire_len = (len < E1000_MIN_FRAME ? E1000_MIN_FRAME : len) + 4;
	if (!memcmp(f, "\xff\xff\xff\xff\xff\xff", 6))
		e->r.stats[ST_BPRC]++;
	else if (f[0] & 1)
		e->r.stats[ST_MPRC]++;
	e->rx_vlan = false;
	if ((e->r.ctrl & CTRL_VME) && len >= 18 && ld16be(f + 12) == (uint16_t)e->r.vet) {
		e->rx_vlan = true;
		e->rx_tci = ld16be(f + 14);
		memmove(f + 4, f, 12);
		f += 4;
		len -= 4;
	}
	if (len < E1000_MIN_FRAME) {
		memset(f + len, 0, E1000_MIN_FRAME - len);
		len = E1000_MIN_FRAME;
	}
	if (!(e->r.rctl & RCTL_SECRC)) {
		uint32_t fcs = e1000_fcs(e, f, len);

		for (unsigned i = 0; i < 4; i++)
			f[len + i] = (uint8_t)(fcs >> (8 * i));
		len += 4;
	}
	e->rx_off = (size_t)(f - e->rx_buf);
	e->rx_len = len;
	e->rx_pending = true;
	return 1;
}

/* A descriptor at RDH whose buffer cannot be written: error it, drop the frame. */
static void e1000_rx_bad_buffer(struct e1000 *e, uint64_t base, uint32_t count, uint64_t buf)
{
	uint8_t wb[8] = { 0 };

	wb[4] = RXD_STA_DD | RXD_STA_EOP;
	wb[5] = RXD_ERR_RXE;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	gm_write(e->gm, base + (uint64_t)e->r.rdh * 16 + 8, wb, sizeof(wb));
	e->r.rdh = (e->r.rdh + 1) % count;
	e->rx_pending = false;
	e->stats.rx_dropped++;
	log_guest(&e->rl, E1000_TAG, "receive buffer at %#llx is outside guest RAM", (unsigned long long)buf);
	e1000_raise(e, ICR_RXT0);
}

/*
 * Copy the pending frame into descriptors from RDH. 1: delivered (or
 * dropped for good), 0: not enough descriptors yet, -1: no usable ring.
 */
static int e1000_rx_deliver(struct e1000 *e)
{
	unsigned bufsize = e1000_rx_bufsize(e->r.rctl);
	uint64_t base, bufs[E1000_RX_MAX_DESC];
	uint32_t count, avail, need, thr;
	size_t left = e->rx_len;
	const uint8_t *p = e->rx_buf + e->rx_off;

	if (!e1000_ring(e, "receive", e->r.rdbal, e->r.rdbah, e->r.rdlen, e->r.rdh, e->r.rdt, &base, &count))
		return -1;
	need = (uint32_t)((e->rx_len + bufsize - 1) / bufsize);
	if (need > E1000_RX_MAX_DESC || need >= count) {
		/* The ring can never hold it. */
		e->rx_pending = false;
		e->stats.rx_dropped++;
		e->r.stats[ST_MPC]++;
		log_guest(&e->rl, E1000_TAG, "a %zu-byte frame needs %u buffers; the ring has %u", e->rx_len,
			  need, count);
		return 1;
	}
	avail = (e->r.rdt + count - e->r.rdh) % count;
	if (avail < need) {
		e->r.stats[ST_RNBC]++;
		e->stats.rx_no_desc++;
		return 0;
	}
	/* Copy the buffer addresses out once, check them all, then write. */
	for (uint32_t i = 0; i < need; i++) {
		uint8_t d[8];
		uint64_t gpa = base + (uint64_t)((e->r.rdh + i) % count) * 16;
		size_t chunk = left < bufsize ? left : bufsize;

		gm_read(e->gm, gpa, d, sizeof(d));
		bufs[i] = ld64le(d);
		if (!gm_ptr(e->gm, bufs[i], chunk)) {
			e1000_rx_bad_buffer(e, base, count, bufs[i]);
			return 1;
		}
		left -= chunk;
	}
	left = e->rx_len;
	for (uint32_t i = 0; i < need; i++) {
		uint64_t gpa = base + (uint64_t)e->r.rdh * 16;
		size_t chunk = left < bufsize ? left : bufsize;
		uint8_t wb[8] = { 0 };

		gm_write(e->gm, bufs[i], p, chunk);
		st16le(wb, (uint16_t)chunk);
		wb[4] = RXD_STA_DD | RXD_STA_IXSM | (i + 1 == need ? RXD_STA_EOP : 0) |
			(e->rx_vlan ? RXD_STA_VP : 0);
		if (e->rx_vlan)
			st16le(wb + 6, e->rx_tci);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		gm_write(e->gm, gpa + 8, wb, sizeof(wb));
		p += chunk;
		left -= chunk;
		e->r.rdh = (e->r.rdh + 1) % count;
	}
	e->rx_pending = false;
	e->stats.rx_packets++;
	e->stats.rx_bytes += e->rx_wire_len - 4;
	e->r.stats[ST_GPRC]++;
	e->r.stats[ST_GORC] += e->rx_wire_len;
	e1000_size_bin(e, ST_PRC64, e->rx_wire_len);
	/* RXDMT0 when the free descriptors fall to the RDMTS fraction of the ring. */
	thr = count >> (((e->r.rctl >> RCTL_RDMTS_SHIFT) & 3) + 1);
	e1000_raise(e, ICR_RXT0 | (avail > thr && avail - need <= thr ? ICR_RXDMT0 : 0));
	return 1;
}

/* Move up to `budget` frames from the backend to the guest. Caller holds e->lock. */
static void e1000_rx(struct e1000 *e, unsigned budget)
{
	unsigned frames = 0;

	while (frames < budget) {
		int rc;

		if (!e1000_rx_can_read(e))
			return;
		if (!e->rx_pending) {
			/* Read nothing the guest has no room for: the backend keeps it queued. */
			uint64_t base;
			uint32_t count;

			if (!e1000_ring(e, "receive", e->r.rdbal, e->r.rdbah, e->r.rdlen, e->r.rdh, e->r.rdt,
					&base, &count) || e->r.rdh == e->r.rdt) {
				e->rx_blocked = true;
				return;
			}
			rc = e1000_rx_read(e);
			if (rc <= 0)
				return;
			frames++;
			if (rc == 2)
				continue;
		}
		rc = e1000_rx_deliver(e);
		if (rc <= 0) {
			e->rx_blocked = true;
			return;
		}
	}
}

/* ---- register file ---- */

/* Registers that only hold a value: where, and which bits are writable. */
struct e1000_plain {
	uint16_t reg;
	uint16_t field;
	uint32_t wmask;
};

#define PLAIN(r, f, m) { r, (uint16_t)offsetof(struct e1000_regs, f), m }

static const struct e1000_plain e1000_plain_regs[] = {
	PLAIN(R_CTRL_EXT, ctrl_ext, 0xffffffffu & ~CTRL_EXT_EE_RST),
	PLAIN(R_FCAL, fcal, 0xffffffffu),
	PLAIN(R_FCAH, fcah, 0x0000ffffu),
	PLAIN(R_FCT, fct, 0x0000ffffu),
	PLAIN(R_VET, vet, 0x0000ffffu),
	PLAIN(R_ITR, itr, 0x0000ffffu),
	PLAIN(R_FCTTV, fcttv, 0x0000ffffu),
	PLAIN(R_TXCW, txcw, 0xc0000fffu),
	PLAIN(R_TIPG, tipg, 0x3fffffffu),
	PLAIN(R_AIT, ait, 0x0000ffffu),
	PLAIN(R_LEDCTL, ledctl, 0xffffffffu),
	PLAIN(R_FCRTL, fcrtl, 0x8000fff8u),
	PLAIN(R_FCRTH, fcrth, 0x0000fff8u),
	PLAIN(R_RDTR, rdtr, 0x0000ffffu),
	PLAIN(R_RXDCTL, rxdctl, 0x013f3f3fu),
	PLAIN(R_RADV, radv, 0x0000ffffu),
	PLAIN(R_RSRPD, rsrpd, 0x00000fffu),
	PLAIN(R_TXDMAC, txdmac, 0x00000001u),
	PLAIN(R_TIDV, tidv, 0x0000ffffu),
	PLAIN(R_TXDCTL, txdctl, 0x013f3f3fu),
	PLAIN(R_TADV, tadv, 0x0000ffffu),
	PLAIN(R_TSPMT, tspmt, 0xffffffffu),
	PLAIN(R_RXCSUM, rxcsum, 0x000003ffu),
	PLAIN(R_WUC, wuc, 0x0000000fu),
	PLAIN(R_WUFC, wufc, 0xffffffffu),
	PLAIN(R_MANC, manc, 0xffffffffu),
	PLAIN(R_IPAV, ipav, 0x00010001u),
};

static const struct e1000_plain *e1000_plain_find(uint32_t off)
{
	for (size_t i = 0; i < sizeof(e1000_plain_regs) / sizeof(e1000_plain_regs[0]); i++)
		if (e1000_plain_regs[i].reg == off)
			return &e1000_plain_regs[i];
	return NULL;
}

static uint32_t *e1000_plain_ptr(struct e1000 *e, const struct e1000_plain *pl)
{
	return (uint32_t *)(void *)((uint8_t *)&e->r + pl->field);
}

/* Statistics: 32-bit clear-on-read counters; the 64-bit octet counters clear when their high half is read. */
static uint32_t e1000_stat_read(struct e1000 *e, unsigned idx)
{
	uint64_t v;

	switch (idx) {
	case ST_GORC: case ST_GOTC: case ST_TOR: case ST_TOT:
		return (uint32_t)e->r.stats[idx];
	case ST_GORC + 1: case ST_GOTC + 1: case ST_TOR + 1: case ST_TOT + 1:
		v = e->r.stats[idx - 1];
		e->r.stats[idx - 1] = 0;
		return (uint32_t)(v >> 32);
	default:
		v = e->r.stats[idx];
		e->r.stats[idx] = 0;
		return v > 0xffffffffu ? 0xffffffffu : (uint32_t)v;
	}
}

static void e1000_unimplemented(struct e1000 *e, const char *what, uint32_t off)
{
	log_guest(&e->rl_reg, E1000_TAG, "%s of register %#x, which is not implemented", what, off);
}

/* off: 4-byte aligned, inside the register file. Caller holds e->lock. */
static uint32_t e1000_reg_read(struct e1000 *e, uint32_t off)
{
	const struct e1000_plain *pl;
	uint32_t v;

	switch (off) {
	case R_CTRL: return e->r.ctrl;
	case R_STATUS: return e1000_status(e);
	case R_EECD: return e1000_eecd_read(e);
	case R_EERD: return e->r.eerd;
	case R_MDIC: return e->r.mdic;
	case R_ICR:
		v = e->r.icr;
		e->r.icr = 0;
		e1000_update_irq(e);
		return v;
	case R_ICS: case R_IMC: return 0;
	case R_IMS: return e->r.ims;
	case R_RCTL: return e->r.rctl;
	case R_TCTL: return e->r.tctl;
	case R_PBA: return (e->r.pba & 0xffff) | ((64u - (e->r.pba & 0x3f)) & 0xffff) << 16;
	case R_RDBAL: return e->r.rdbal;
	case R_RDBAH: return e->r.rdbah;
	case R_RDLEN: return e->r.rdlen;
	case R_RDH: return e->r.rdh;
	case R_RDT: return e->r.rdt;
	case R_TDBAL: return e->r.tdbal;
	case R_TDBAH: return e->r.tdbah;
	case R_TDLEN: return e->r.tdlen;
	case R_TDH: return e->r.tdh;
	case R_TDT: return e->r.tdt;
	case R_WUS: return e->r.wus;
	default:
		break;
	}
	if (off >= R_STATS && off < R_STATS + 4 * ST_COUNT)
		return e1000_stat_read(e, (off - R_STATS) / 4);
	if (off >= R_MTA && off < R_MTA + 4 * 128)
		return e->r.mta[(off - R_MTA) / 4];
	if (off >= R_RA && off < R_RA + 4 * 32)
		return e->r.ra[(off - R_RA) / 4];
	if (off >= R_VFTA && off < R_VFTA + 4 * 128)
		return e->r.vfta[(off - R_VFTA) / 4];
	pl = e1000_plain_find(off);
	if (pl)
		return *e1000_plain_ptr(e, pl);
	e1000_unimplemented(e, "read", off);
	return 0;
}

static void e1000_ctrl_write(struct e1000 *e, uint32_t v)
{
	bool was_up = e1000_link_up(e);

	if (v & CTRL_RST) {
		e1000_mac_reset(e);
		return;
	}
	if ((v & CTRL_PHY_RST) && !(e->r.ctrl & CTRL_PHY_RST))
		e1000_phy_reset(e);
	e->r.ctrl = v;
	if (e1000_link_up(e) != was_up) {
		e1000_raise(e, ICR_LSC);
		e->kick |= WORK_TX | WORK_RX;
	}
}

static void e1000_len_write(struct e1000 *e, uint32_t *reg, uint32_t v, const char *name)
{
	if (v & 0x7f)
		log_guest(&e->rl, E1000_TAG, "%s %#x is not a multiple of 128; using %#x", name, v, v & 0xfff80u);
	*reg = v & 0xfff80u;
}

static void e1000_reg_write(struct e1000 *e, uint32_t off, uint32_t v)
{
	const struct e1000_plain *pl;

	switch (off) {
	case R_CTRL: e1000_ctrl_write(e, v); return;
	case R_STATUS: return;
	case R_EECD: e1000_eecd_write(e, v); return;
	case R_EERD: e1000_eerd_write(e, v); return;
	case R_MDIC: e1000_mdic_write(e, v); return;
	case R_ICR:
		e->r.icr &= ~v;
		e1000_update_irq(e);
		return;
	case R_ICS: e1000_raise(e, v & ICR_MASK); return;
	case R_IMS:
		e->r.ims |= v & ICR_MASK;
		e1000_update_irq(e);
		return;
	case R_IMC:
		e->r.ims &= ~v;
		e1000_update_irq(e);
		return;
	case R_RCTL:
		e->r.rctl = v & 0x07ffbffeu;
		e->kick |= WORK_RX;
		return;
	case R_TCTL:
		e->r.tctl = v & 0x03fffffau;
		e->kick |= WORK_TX;
		return;
	case R_PBA: e->r.pba = v & 0xffff; return;
	case R_RDBAL: e->r.rdbal = v & ~0xfu; e->kick |= WORK_RX; return;
	case R_RDBAH: e->r.rdbah = v; e->kick |= WORK_RX; return;
	case R_RDLEN: e1000_len_write(e, &e->r.rdlen, v, "RDLEN"); e->kick |= WORK_RX; return;
	case R_RDH: e->r.rdh = v & 0xffff; e->kick |= WORK_RX; return;
	case R_RDT:
		e->r.rdt = v & 0xffff;
		e->stats.rdt_writes++;
		e->kick |= WORK_RX;
		return;
	case R_TDBAL: e->r.tdbal = v & ~0xfu; return;
	case R_TDBAH: e->r.tdbah = v; return;
	case R_TDLEN: e1000_len_write(e, &e->r.tdlen, v, "TDLEN"); return;
	case R_TDH: e->r.tdh = v & 0xffff; return;
	case R_TDT:
		e->r.tdt = v & 0xffff;
		e->stats.tdt_writes++;
		e->kick |= WORK_TX;
		return;
	case R_WUS: e->r.wus &= ~v; return;
	default:
		break;
	}
	if (off >= R_STATS && off < R_STATS + 4 * ST_COUNT)
		return;   /* read-only */
	if (off >= R_MTA && off < R_MTA + 4 * 128) {
		e->r.mta[(off - R_MTA) / 4] = v;
		return;
	}
	if (off >= R_RA && off < R_RA + 4 * 32) {
		unsigned i = (off - R_RA) / 4;

		e->r.ra[i] = (i & 1) ? v & (RAH_AV | RAH_AS_MASK | 0xffff) : v;
		return;
	}
	if (off >= R_VFTA && off < R_VFTA + 4 * 128) {
		e->r.vfta[(off - R_VFTA) / 4] = v;
		return;
	}
	pl = e1000_plain_find(off);
	if (pl) {
		uint32_t *p = e1000_plain_ptr(e, pl);

		*p = (*p & ~pl->wmask) | (v & pl->wmask);
		return;
	}
	e1000_unimplemented(e, "write", off);
}

/* ---- BAR0: memory-mapped registers ---- */

static bool e1000_access_ok(struct e1000 *e, uint64_t off, unsigned size, const char *what)
{
	if (size == 4 && !(off & 3) && off < E1000_MMIO_SIZE)
		return true;
	log_guest(&e->rl, E1000_TAG, "ignoring a %u-byte %s at register offset %#llx (dword accesses only)",
		  size, what, (unsigned long long)off);
	return false;
}

static uint64_t e1000_mmio_read(void *opaque, uint64_t off, unsigned size)
{
	struct e1000 *e = opaque;
	uint32_t v = 0;

	e1000_lock(e);
	e->stats.mmio_exits++;
	e1000_check_deferred(e);
	if (e1000_access_ok(e, off, size, "read"))
		v = e1000_reg_read(e, (uint32_t)off);
	e1000_unlock(e);
	return v;
}

static void e1000_mmio_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct e1000 *e = opaque;

	e1000_lock(e);
	e->stats.mmio_exits++;
	e1000_check_deferred(e);
	if (e1000_access_ok(e, off, size, "write"))
		e1000_reg_write(e, (uint32_t)off, (uint32_t)value);
	e1000_unlock(e);
}

static const struct bus_dev_ops e1000_mmio_ops = { .read = e1000_mmio_read, .write = e1000_mmio_write };

/* ---- BAR1: IOADDR (0) selects a register, IODATA (4) accesses it ---- */

static bool e1000_ioaddr_ok(struct e1000 *e)
{
	if (e->ioaddr < E1000_MMIO_SIZE)
		return true;
	log_guest(&e->rl, E1000_TAG, "IOADDR %#x is outside the register file", e->ioaddr);
	return false;
}

static uint64_t e1000_io_read(void *opaque, uint64_t off, unsigned size)
{
	struct e1000 *e = opaque;
	uint32_t v = 0;

	e1000_lock(e);
	e->stats.pio_exits++;
	e1000_check_deferred(e);
	if (size != 4 || (off != 0 && off != 4))
		log_guest(&e->rl, E1000_TAG, "ignoring a %u-byte I/O read at %#llx", size, (unsigned long long)off);
	else if (off == 0)
		v = e->ioaddr;
	else if (e1000_ioaddr_ok(e))
		v = e1000_reg_read(e, e->ioaddr & ~3u);
	e1000_unlock(e);
	return v;
}

static void e1000_io_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct e1000 *e = opaque;

	e1000_lock(e);
	e->stats.pio_exits++;
	e1000_check_deferred(e);
	if (size != 4 || (off != 0 && off != 4))
		log_guest(&e->rl, E1000_TAG, "ignoring a %u-byte I/O write at %#llx", size, (unsigned long long)off);
	else if (off == 0)
		e->ioaddr = (uint32_t)value;
	else if (e1000_ioaddr_ok(e))
		e1000_reg_write(e, e->ioaddr & ~3u, (uint32_t)value);
	e1000_unlock(e);
}

static const struct bus_dev_ops e1000_io_ops = { .read = e1000_io_read, .write = e1000_io_write };

/* ---- PCI config: command register and MSI ---- */

/*
 * Bring MSI in line with the capability. fire: send the message for a line
 * already asserted when MSI turns on (not on restore). Caller holds e->lock.
 */
static void e1000_msi_update(struct e1000 *e, bool fire)
{
	const struct pci_dev *pd = &e->pci;
	unsigned cap = e->msi_cap;
	bool enable = pci_get16(pd, cap + 2) & MSI_CTRL_ENABLE, was = e->msi_enabled;
	uint64_t addr = pci_get32(pd, cap + 4) | (uint64_t)pci_get32(pd, cap + 8) << 32;
	uint32_t data = pci_get16(pd, cap + 12);
	const struct msi_host_ops *ops = e->msi->ops;

	if (enable) {
		int rc = 0;

		if (e->msi_gsi < 0) {
			int gsi = ops->route_alloc(e->msi->opaque);

			if (gsi < 0) {
				log_guest(&e->rl, E1000_TAG, "MSI: no GSI route available");
				enable = false;
			} else {
				e->msi_gsi = gsi;
				rc = ops->route_set(e->msi->opaque, (unsigned)gsi, addr, data);
				if (rc == 0)
					rc = ops->irqfd(e->msi->opaque, e->msi_fd, (unsigned)gsi, true);
				if (rc < 0) {
					ops->route_free(e->msi->opaque, (unsigned)gsi);
					e->msi_gsi = -1;
				}
			}
		} else {
			rc = ops->route_set(e->msi->opaque, (unsigned)e->msi_gsi, addr, data);
		}
		if (rc < 0) {
			log_guest(&e->rl, E1000_TAG, "MSI: route setup failed (%d)", rc);
			enable = false;
		}
	}
	e->msi_enabled = enable;
	if (enable && !was && e->line && fire)
		e1000_msi_fire(e);
	e1000_intx_sync(e);
}

static void e1000_cfg_write(struct pci_dev *pd, unsigned off, unsigned size, uint32_t value)
{
	struct e1000 *e = pd->opaque;
	bool cmd = off < PCI_COMMAND + 2 && off + size > PCI_COMMAND;
	bool msi = e->msi_cap && off < e->msi_cap + MSI_CAP_LEN && off + size > e->msi_cap + 2;
	uint16_t c;

	if (!cmd && !msi)
		return;
	e1000_lock(e);
	if (cmd) {
		c = pci_get16(pd, PCI_COMMAND);
		if ((c & PCI_CMD_MASTER) && !e->bus_master)
			e->kick |= WORK_TX | WORK_RX;
		e->bus_master = c & PCI_CMD_MASTER;
		e->intx_off = c & PCI_CMD_INTX_OFF;
		e1000_intx_sync(e);
	}
	if (msi)
		e1000_msi_update(e, true);
	e1000_unlock(e);
}

static const struct pci_dev_ops e1000_pci_ops = { .cfg_write = e1000_cfg_write };

/* ---- I/O thread ---- */

static void e1000_do_work(struct e1000 *e, uint32_t work)
{
	bool inline_work = e->loop == NULL;

	e1000_check_deferred(e);
	if (work & WORK_TX)
		e1000_tx(e, inline_work ? UINT32_MAX : E1000_TX_BUDGET);
	if (work & WORK_RX) {
		e->rx_blocked = false;
		e1000_rx(e, E1000_RX_BUDGET);
	}
}

/* I/O thread: poll the backend for what the device can take now. */
static void e1000_update_events(struct e1000 *e)
{
	uint32_t ev = 0;
	bool more;

	e1000_lock(e);
	if (!e->loop) {
		pthread_mutex_unlock(&e->lock);
		return;
	}
	if (e->rx_dead && e->be_registered) {
		/* A dead tap reports EPOLLERR for ever: stop polling it. */
		loop_del(e->loop, e->be->fd);
		e->be_registered = false;
	}
	if (e1000_rx_can_read(e) && !e->rx_blocked)
		ev |= EPOLLIN;
	if (e->tx_pending)
		ev |= EPOLLOUT;
	if (e->be_registered && ev != e->be_events && loop_mod(e->loop, e->be->fd, ev) == 0)
		e->be_events = ev;
	more = e->tx_more;
	pthread_mutex_unlock(&e->lock);
	if (more)
		e1000_schedule(e, WORK_TX);
}

static void e1000_work_cb(void *opaque)
{
	struct e1000 *e = opaque;

	e1000_lock(e);
	e1000_do_work(e, __atomic_exchange_n(&e->work, 0, __ATOMIC_ACQ_REL));
	pthread_mutex_unlock(&e->lock);
	e1000_update_events(e);
}

static void e1000_backend_cb(void *opaque, uint32_t events)
{
	struct e1000 *e = opaque;

	e1000_lock(e);
	if (events & (EPOLLOUT | EPOLLERR))
		e1000_tx(e, E1000_TX_BUDGET);
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
		e1000_rx(e, E1000_RX_BUDGET);
	pthread_mutex_unlock(&e->lock);
	e1000_update_events(e);
}

static void e1000_timer_cb(void *opaque)
{
	struct e1000 *e = opaque;

	e1000_lock(e);
	e1000_check_deferred(e);
	pthread_mutex_unlock(&e->lock);
}

/* ---- public API ---- */

struct pci_dev *e1000_pci(struct e1000 *e)
{
	return &e->pci;
}

void e1000_set_irq(struct e1000 *e, struct irq *intx)
{
	e1000_lock(e);
	e->intx = intx;
	e->intx_level = false;
	if (intx)
		irq_set_level(intx, false);
	e1000_intx_sync(e);
	pthread_mutex_unlock(&e->lock);
}

void e1000_poll(struct e1000 *e)
{
	e1000_lock(e);
	e1000_do_work(e, WORK_TX | WORK_RX);
	pthread_mutex_unlock(&e->lock);
}

void e1000_get_stats(struct e1000 *e, struct e1000_stats *st)
{
	e1000_lock(e);
	*st = e->stats;
	st->backend_dropped = __atomic_load_n(&e->be->dropped, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&e->lock);
}

int e1000_attach(struct e1000 *e, struct loop *l)
{
	int rc;

	if (e->loop)
		return -EBUSY;
	/* Registered idle; e1000_update_events() turns on what the device state allows. */
	rc = loop_add(l, e->be->fd, 0, e1000_backend_cb, e);
	if (rc < 0)
		return rc;
	rc = net_backend_attach(e->be, l);
	if (rc < 0)
		goto err_be;
	loop_timer_init(&e->itr_timer, l, e1000_timer_cb, e);
	e1000_lock(e);
	e->be_events = 0;
	e->be_registered = true;
	e->loop = l;
	if (e->irq_deferred)
		e1000_timer_arm(e, e->deferred_until_ns);
	pthread_mutex_unlock(&e->lock);
	e1000_schedule(e, WORK_TX | WORK_RX | WORK_EVENTS);
	return 0;

err_be:
	loop_del(l, e->be->fd);
	return rc;
}

void e1000_detach(struct e1000 *e)
{
	struct loop *l;

	e1000_lock(e);
	l = e->loop;
	e->loop = NULL;
	pthread_mutex_unlock(&e->lock);
	if (!l)
		return;
	net_backend_detach(e->be, l);
	if (e->be_registered)
		loop_del(l, e->be->fd);
	e->be_registered = false;
	loop_timer_cancel(&e->itr_timer);
	loop_work_cancel(l, &e->work_post);
}

int e1000_new(struct e1000 **out, const struct e1000_config *cfg, const struct guest_mem *gm,
	      const struct msi_host *msi, char *err, size_t errlen)
{
	struct e1000 *e;
	int rc, cap;

	struct net_backend *be = cfg->backend;

	*out = NULL;
	if (!gm) {
		snprintf(err, errlen, "e1000: no guest memory");
		net_backend_free(be);
		return -EINVAL;
	}
	if (!be) {
		rc = net_backend_open(&be, &cfg->net, err, errlen);
		if (rc < 0)
			return rc;
	}
	e = calloc(1, sizeof(*e));
	if (!e) {
		net_backend_free(be);
		snprintf(err, errlen, "e1000: out of memory");
		return -ENOMEM;
	}
	e->be = be;
	e->msi_fd = -1;
	loop_work_init(&e->work_post, e1000_work_cb, e);
	e->msi_gsi = -1;
	e->tx_buf = malloc(E1000_TX_MAX);
	e->rx_buf = malloc(E1000_RX_BUF_LEN);
	if (!e->tx_buf || !e->rx_buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "e1000: out of memory");
		goto err_free;
	}
	/* The MSI message goes out through KVM's irqfd on this eventfd. */
	e->msi_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e->msi_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "e1000: eventfd: %s", strerror(errno));
		goto err_free;
	}
	/* Frames come with full checksums and unsegmented: the 82540 offers no receive offload. */
	rc = net_backend_set_offload(e->be, 0);
	if (rc < 0) {
		snprintf(err, errlen, "e1000: %s backend: cannot turn offloads off: %s", e->be->kind, strerror(-rc));
		goto err_free;
	}
	e->gm = gm;
	e->msi = msi && msi->ops ? msi : NULL;
	memcpy(e->mac, cfg->mac, sizeof(e->mac));
	e->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	e->rl_reg = (struct log_ratelimit)LOG_RATELIMIT_INIT;
	pthread_mutex_init(&e->lock, NULL);
	e1000_eeprom_init(e);
	e1000_phy_reset(e);
	e1000_mac_reset(e);

	pci_dev_init(&e->pci, E1000_VENDOR_ID, E1000_DEVICE_ID, E1000_CLASS, 0, "e1000");
	pci_set16(&e->pci, PCI_SUBSYS_VENDOR, E1000_VENDOR_ID);
	pci_set16(&e->pci, PCI_SUBSYS_ID, E1000_SUBSYS_ID);
	e->pci.ops = &e1000_pci_ops;
	e->pci.opaque = e;
	rc = pci_dev_set_bar(&e->pci, 0, E1000_MMIO_SIZE, 0, &e1000_mmio_ops, e);
	if (rc == 0)
		rc = pci_dev_set_bar(&e->pci, 1, E1000_IO_SIZE, PCI_BAR_IO, &e1000_io_ops, e);
	if (rc == 0 && e->msi) {
		cap = pci_dev_add_cap(&e->pci, 0x05, MSI_CAP_LEN);
		if (cap < 0) {
			rc = cap;
		} else {
			e->msi_cap = (unsigned)cap;
			pci_set16(&e->pci, (unsigned)cap + 2, MSI_CTRL_64BIT);
			/* Enable and Multiple Message Enable; one vector (MMC 0). */
			e->pci.wmask[cap + 2] = 0x71;
			for (unsigned i = 4; i < 12; i++)
				e->pci.wmask[cap + i] = 0xff;
			e->pci.wmask[cap + 4] = 0xfc;
			e->pci.wmask[cap + 12] = 0xff;
			e->pci.wmask[cap + 13] = 0xff;
		}
	}
	if (rc < 0) {
		snprintf(err, errlen, "e1000: PCI setup failed: %s", strerror(-rc));
		pthread_mutex_destroy(&e->lock);
		goto err_free;
	}
	*out = e;
	return 0;

err_free:
	if (e->msi_fd >= 0)
		close(e->msi_fd);
	net_backend_free(e->be);
	free(e->tx_buf);
	free(e->rx_buf);
	free(e);
	return rc;
}

void e1000_free(struct e1000 *e)
{
	if (!e)
		return;
	e1000_detach(e);
	if (e->msi && e->msi_gsi >= 0) {
		e->msi->ops->irqfd(e->msi->opaque, e->msi_fd, (unsigned)e->msi_gsi, false);
		e->msi->ops->route_free(e->msi->opaque, (unsigned)e->msi_gsi);
	}
	net_backend_free(e->be);
	close(e->msi_fd);
	pthread_mutex_destroy(&e->lock);
	free(e->tx_buf);
	free(e->rx_buf);
	free(e);
}

/* ---- pause and snapshot ---- */

void e1000_quiesce(struct e1000 *e)
{
	pthread_mutex_lock(&e->lock);
	e1000_check_deferred(e);
	/* The whole ring in one go: only a backend EAGAIN can leave work behind, and that is saved. */
	e1000_tx(e, UINT32_MAX);
	pthread_mutex_unlock(&e->lock);
}

void e1000_resume_work(struct e1000 *e)
{
	bool loop;

	pthread_mutex_lock(&e->lock);
	loop = e->loop != NULL;
	pthread_mutex_unlock(&e->lock);
	if (loop)
		e1000_schedule(e, WORK_TX | WORK_RX | WORK_EVENTS);
}

/* The register file goes out as its 32-bit words in declaration order, then the statistics. */
#define E1000_REGS_WORDS (offsetof(struct e1000_regs, vfta) / 4 + 128)
_Static_assert(E1000_REGS_WORDS == 335 && sizeof(struct e1000_regs) == 336 * 4 + 8 * ST_COUNT,
	       "struct e1000_regs changed: update the snapshot layout and E1000_SNAP_VERSION");

/* The longest ITR interval (ITR is 16 bits of 256 ns): older history does not matter. */
#define E1000_ITR_MAX_NS (0xffffull * 256)

/* Everything e1000_load reads, checked before any of it reaches the device. */
struct e1000_snap {
	struct pci_dev_snap pci;
	struct e1000_regs r;
	uint16_t phy[PHY_NREGS];
	uint16_t eeprom[EE_WORDS];
	uint8_t ee_mode, ee_nbits, ee_bitpos;
	uint32_t ee_shift;
	uint16_t ee_addr, ee_data;
	bool ee_do;
	bool line, irq_deferred, irq_ever;
	uint64_t since_irq_ns, deferred_left_ns;
	uint32_t ioaddr;
	struct e1000_txctx ctx, tx_ctx;
	bool tx_started, tx_bad, tx_legacy, tx_tso, tx_pending, tx_more;
	uint8_t tx_bad_code, tx_cmd, tx_eop_cmd, tx_popts, tx_css, tx_cso;
	uint16_t tx_special;
	uint32_t tx_next_seg, tx_len;
	bool rx_pending, rx_vlan;
	uint16_t rx_tci;
	uint32_t rx_len, rx_wire_len;
	uint8_t tx_buf[E1000_TX_MAX];
	uint8_t rx_buf[E1000_RX_MAX_LPE];
};

static void e1000_put_txctx(struct snap_writer *w, const struct e1000_txctx *c)
{
	snap_put_u8(w, c->ipcss);
	snap_put_u8(w, c->ipcso);
	snap_put_u8(w, c->tucss);
	snap_put_u8(w, c->tucso);
	snap_put_u8(w, c->tucmd);
	snap_put_u8(w, c->hdrlen);
	snap_put_u16(w, c->ipcse);
	snap_put_u16(w, c->tucse);
	snap_put_u16(w, c->mss);
	snap_put_u32(w, c->paylen);
}

static void e1000_get_txctx(struct snap_sec *s, struct e1000_txctx *c)
{
	c->ipcss = snap_get_u8(s);
	c->ipcso = snap_get_u8(s);
	c->tucss = snap_get_u8(s);
	c->tucso = snap_get_u8(s);
	c->tucmd = snap_get_u8(s);
	c->hdrlen = snap_get_u8(s);
	c->ipcse = snap_get_u16(s);
	c->tucse = snap_get_u16(s);
	c->mss = snap_get_u16(s);
	c->paylen = snap_get_u32(s);
}

static uint8_t e1000_tx_bad_code(const char *why)
{
	for (uint8_t i = 1; i < TX_BAD_COUNT; i++)
		if (why == e1000_tx_bad_whys[i])
			return i;
	return TX_BAD_NONE;
}

void e1000_save(const struct e1000 *e, struct snap_writer *w)
{
	pthread_mutex_t *lock = (pthread_mutex_t *)&e->lock;
	uint64_t now = now_ns(), since = 0, left = 0;

	/* The host lock first, alone: the order is host -> e1000. */
	pci_dev_save(&e->pci, w);
	pthread_mutex_lock(lock);
	for (size_t i = 0; i < E1000_REGS_WORDS; i++) {
		uint32_t v;

		memcpy(&v, (const uint8_t *)&e->r + 4 * i, 4);
		snap_put_u32(w, v);
	}
	for (unsigned i = 0; i < ST_COUNT; i++)
		snap_put_u64(w, e->r.stats[i]);
	for (unsigned i = 0; i < PHY_NREGS; i++)
		snap_put_u16(w, e->phy[i]);
	for (unsigned i = 0; i < EE_WORDS; i++)
		snap_put_u16(w, e->eeprom[i]);

	snap_put_u8(w, (uint8_t)e->ee_mode);
	snap_put_u8(w, (uint8_t)e->ee_nbits);
	snap_put_u8(w, (uint8_t)e->ee_bitpos);
	snap_put_u32(w, e->ee_shift);
	snap_put_u16(w, e->ee_addr);
	snap_put_u16(w, e->ee_data);
	snap_put_bool(w, e->ee_do);

	/* Absolute CLOCK_MONOTONIC times mean nothing in another process: save them relative to now. */
	if (e->irq_ever)
		since = now - e->last_irq_ns < E1000_ITR_MAX_NS ? now - e->last_irq_ns : E1000_ITR_MAX_NS;
	if (e->irq_deferred && e->deferred_until_ns > now)
		left = e->deferred_until_ns - now < E1000_ITR_MAX_NS ? e->deferred_until_ns - now : E1000_ITR_MAX_NS;
	snap_put_bool(w, e->line);
	snap_put_bool(w, e->irq_deferred);
	snap_put_bool(w, e->irq_ever);
	snap_put_u64(w, since);
	snap_put_u64(w, left);
	snap_put_u32(w, e->ioaddr);

	e1000_put_txctx(w, &e->ctx);
	e1000_put_txctx(w, &e->tx_ctx);
	snap_put_bool(w, e->tx_started);
	snap_put_bool(w, e->tx_bad);
	snap_put_bool(w, e->tx_legacy);
	snap_put_bool(w, e->tx_tso);
	snap_put_bool(w, e->tx_pending);
	snap_put_bool(w, e->tx_more);
	snap_put_u8(w, e->tx_bad ? e1000_tx_bad_code(e->tx_bad_why) : TX_BAD_NONE);
	snap_put_u8(w, e->tx_cmd);
	snap_put_u8(w, e->tx_eop_cmd);
	snap_put_u8(w, e->tx_popts);
	snap_put_u8(w, e->tx_css);
	snap_put_u8(w, e->tx_cso);
	snap_put_u16(w, e->tx_special);
	snap_put_u32(w, e->tx_next_seg);
	snap_put_u32(w, (uint32_t)e->tx_len);
	snap_put(w, e->tx_buf, e->tx_len);

	snap_put_bool(w, e->rx_pending);
	snap_put_bool(w, e->rx_pending && e->rx_vlan);
	snap_put_u16(w, e->rx_pending ? e->rx_tci : 0);
	snap_put_u32(w, e->rx_pending ? (uint32_t)e->rx_len : 0);
	snap_put_u32(w, e->rx_pending ? (uint32_t)e->rx_wire_len : 0);
	if (e->rx_pending)
		snap_put(w, e->rx_buf + e->rx_off, e->rx_len);
	pthread_mutex_unlock(lock);
}

/* Values the register writes can produce; anything else never came from a guest. NULL: fine. */
static const char *e1000_regs_check(const struct e1000_regs *r)
{
	const struct e1000_plain *pl = e1000_plain_regs;

	for (size_t i = 0; i < sizeof(e1000_plain_regs) / sizeof(e1000_plain_regs[0]); i++, pl++) {
		uint32_t v;

		memcpy(&v, (const uint8_t *)r + pl->field, 4);
		if (v & ~pl->wmask)
			return "a register has bits set that are not writable";
	}
	if ((r->eecd & ~EECD_WMASK) || (r->icr & ~ICR_MASK) || (r->ims & ~ICR_MASK))
		return "EECD, ICR or IMS has reserved bits set";
	if ((r->rctl & ~0x07ffbffeu) || (r->tctl & ~0x03fffffau) || (r->pba & ~0xffffu))
		return "RCTL, TCTL or PBA has reserved bits set";
	if ((r->rdbal & 0xf) || (r->tdbal & 0xf) || (r->rdlen & ~0xfff80u) || (r->tdlen & ~0xfff80u))
		return "a ring base or length is misaligned";
	if (r->rdh > 0xffff || r->rdt > 0xffff || r->tdh > 0xffff || r->tdt > 0xffff)
		return "a ring head or tail is out of range";
	for (unsigned i = 1; i < 32; i += 2)
		if (r->ra[i] & ~(RAH_AV | RAH_AS_MASK | 0xffffu))
			return "a receive address high register has reserved bits set";
	return NULL;
}

/* Read the section after the PCI part into t. NULL, or why it is refused. */
static const char *e1000_snap_read(struct snap_sec *s, struct e1000_snap *t)
{
	const char *why;

	for (size_t i = 0; i < E1000_REGS_WORDS; i++) {
		uint32_t v = snap_get_u32(s);

		memcpy((uint8_t *)&t->r + 4 * i, &v, 4);
	}
	for (unsigned i = 0; i < ST_COUNT; i++)
		t->r.stats[i] = snap_get_u64(s);
	for (unsigned i = 0; i < PHY_NREGS; i++)
		t->phy[i] = snap_get_u16(s);
	for (unsigned i = 0; i < EE_WORDS; i++)
		t->eeprom[i] = snap_get_u16(s);
	t->ee_mode = snap_get_u8(s);
	t->ee_nbits = snap_get_u8(s);
	t->ee_bitpos = snap_get_u8(s);
	t->ee_shift = snap_get_u32(s);
	t->ee_addr = snap_get_u16(s);
	t->ee_data = snap_get_u16(s);
	t->ee_do = snap_get_bool(s);
	t->line = snap_get_bool(s);
	t->irq_deferred = snap_get_bool(s);
	t->irq_ever = snap_get_bool(s);
	t->since_irq_ns = snap_get_u64(s);
	t->deferred_left_ns = snap_get_u64(s);
	t->ioaddr = snap_get_u32(s);
	e1000_get_txctx(s, &t->ctx);
	e1000_get_txctx(s, &t->tx_ctx);
	t->tx_started = snap_get_bool(s);
	t->tx_bad = snap_get_bool(s);
	t->tx_legacy = snap_get_bool(s);
	t->tx_tso = snap_get_bool(s);
	t->tx_pending = snap_get_bool(s);
	t->tx_more = snap_get_bool(s);
	t->tx_bad_code = snap_get_u8(s);
	t->tx_cmd = snap_get_u8(s);
	t->tx_eop_cmd = snap_get_u8(s);
	t->tx_popts = snap_get_u8(s);
	t->tx_css = snap_get_u8(s);
	t->tx_cso = snap_get_u8(s);
	t->tx_special = snap_get_u16(s);
	t->tx_next_seg = snap_get_u32(s);
	t->tx_len = snap_get_u32(s);
	if (s->err)
		return "section truncated or malformed";
	if (t->tx_len > E1000_TX_MAX)
		return "the transmit frame is longer than 64 KiB";
	snap_get(s, t->tx_buf, t->tx_len);
	t->rx_pending = snap_get_bool(s);
	t->rx_vlan = snap_get_bool(s);
	t->rx_tci = snap_get_u16(s);
	t->rx_len = snap_get_u32(s);
	t->rx_wire_len = snap_get_u32(s);
	if (s->err)
		return "section truncated or malformed";
	if (t->rx_pending ? t->rx_len < E1000_MIN_FRAME || t->rx_len > E1000_RX_MAX_LPE ||
			    t->rx_wire_len < E1000_MIN_FRAME + 4 || t->rx_wire_len > E1000_RX_MAX_LPE
			  : t->rx_len || t->rx_wire_len)
		return "the pending receive frame has an impossible length";
	snap_get(s, t->rx_buf, t->rx_len);
	if (s->err)
		return "section truncated or malformed";

	why = e1000_regs_check(&t->r);
	if (why)
		return why;
	if (t->ee_mode > EE_IGNORE || t->ee_nbits > 3 + EE_ADDR_BITS || t->ee_bitpos > 16 ||
	    t->ee_addr >= EE_WORDS)
		return "EEPROM bit-bang state out of range";
	if (t->since_irq_ns > E1000_ITR_MAX_NS || t->deferred_left_ns > E1000_ITR_MAX_NS)
		return "interrupt throttling times out of range";
	/* The invariants e1000_update_irq keeps. */
	if ((t->line || t->irq_deferred) && !(t->r.icr & t->r.ims))
		return "interrupt asserted with no unmasked cause";
	if (t->line && t->irq_deferred)
		return "interrupt both asserted and deferred";
	if (t->tx_bad_code >= TX_BAD_COUNT || t->tx_bad != (t->tx_bad_code != TX_BAD_NONE))
		return "bad transmit error state";
	if (t->tx_started && t->tx_pending)
		return "transmit frame both gathering and waiting";
	if (t->tx_pending) {
		if (t->tx_len < ETH_HLEN)
			return "the waiting transmit frame is shorter than an Ethernet header";
		if (t->tx_tso && (t->tx_next_seg > E1000_TSO_MAX_SEGS ||
				  e1000_tso_check(t->tx_len, t->tx_popts, &t->tx_ctx)))
			return "the waiting TSO frame does not match its context";
	}
	return NULL;
}

/* Caller holds e->lock. */
static void e1000_snap_commit(struct e1000 *e, const struct e1000_snap *t)
{
	uint16_t cmd = pci_get16(&e->pci, PCI_COMMAND);
	uint64_t now = now_ns();
	bool level;

	e->r = t->r;
	memcpy(e->phy, t->phy, sizeof(e->phy));
	memcpy(e->eeprom, t->eeprom, sizeof(e->eeprom));
	e->ee_mode = (enum e1000_ee_mode)t->ee_mode;
	e->ee_nbits = t->ee_nbits;
	e->ee_bitpos = t->ee_bitpos;
	e->ee_shift = t->ee_shift;
	e->ee_addr = t->ee_addr;
	e->ee_data = t->ee_data;
	e->ee_do = t->ee_do;

	e->bus_master = cmd & PCI_CMD_MASTER;
	e->intx_off = cmd & PCI_CMD_INTX_OFF;
	e->line = t->line;
	e->irq_deferred = t->irq_deferred;
	e->irq_ever = t->irq_ever;
	e->last_irq_ns = now > t->since_irq_ns ? now - t->since_irq_ns : 0;
	e->deferred_until_ns = now + t->deferred_left_ns;
	e->ioaddr = t->ioaddr;

	e->ctx = t->ctx;
	e->tx_ctx = t->tx_ctx;
	e->tx_started = t->tx_started;
	e->tx_bad = t->tx_bad;
	e->tx_bad_why = t->tx_bad ? e1000_tx_bad_whys[t->tx_bad_code] : NULL;
	e->tx_legacy = t->tx_legacy;
	e->tx_tso = t->tx_tso;
	e->tx_pending = t->tx_pending;
	e->tx_more = t->tx_more;
	e->tx_cmd = t->tx_cmd;
	e->tx_eop_cmd = t->tx_eop_cmd;
	e->tx_popts = t->tx_popts;
	e->tx_css = t->tx_css;
	e->tx_cso = t->tx_cso;
	e->tx_special = t->tx_special;
	e->tx_next_seg = t->tx_next_seg;
	e->tx_len = t->tx_len;
	memcpy(e->tx_buf, t->tx_buf, t->tx_len);

	e->rx_pending = t->rx_pending;
	e->rx_off = 0;
	e->rx_len = t->rx_len;
	e->rx_wire_len = t->rx_wire_len;
	e->rx_vlan = t->rx_vlan;
	e->rx_tci = t->rx_tci;
	memcpy(e->rx_buf, t->rx_buf, t->rx_len);
	e->rx_blocked = false;
	e->kick = 0;

	/* Host-side effects of the restored state: MSI route and irqfd, the INTx level, the ITR timer. */
	if (e->msi_cap)
		e1000_msi_update(e, false);
	else
		e->msi_enabled = false;
	level = e->line && !e->msi_enabled && !e->intx_off;
	e->intx_level = level;
	irq_set_level(e->intx, level);
	if (e->loop && e->irq_deferred)
		e1000_timer_arm(e, e->deferred_until_ns);
}

int e1000_load(struct e1000 *e, struct snap_sec *s)
{
	struct e1000_snap *t;
	const char *why = NULL;
	bool loop;
	int rc;

	if (s->version != E1000_SNAP_VERSION) {
		log_err("snapshot", "e1000: unknown section version %u", s->version);
		snap_sec_fail(s);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t) {
		snap_sec_fail(s);
		return -ENOMEM;
	}
	/* Every check first, the PCI part included: a refused section changes nothing. */
	rc = pci_dev_load_check(&e->pci, s, &t->pci);
	if (rc == 0) {
		why = e1000_snap_read(s, t);
		if (why) {
			log_err("snapshot", "e1000: %s", why);
			snap_sec_fail(s);
			rc = -EINVAL;
		}
	}
	if (rc < 0) {
		free(t);
		return rc;
	}
	pci_dev_load_apply(&e->pci, &t->pci);
	pthread_mutex_lock(&e->lock);
	e1000_snap_commit(e, t);
	loop = e->loop != NULL;
	pthread_mutex_unlock(&e->lock);
	free(t);
	if (loop)
		e1000_schedule(e, WORK_TX | WORK_RX | WORK_EVENTS);
	return 0;
}
