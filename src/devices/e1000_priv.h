/*
 * The e1000 device model's insides, shared by its files: e1000.c (register
 * model, interrupts, receive, I/O thread, life cycle), e1000_tx.c (transmit,
 * TSO and checksum offload) and e1000_snap.c (pause, save and load). Not for
 * anything outside the device.
 */
#ifndef KESTREL_E1000_PRIV_H
#define KESTREL_E1000_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "devices/e1000.h"
#include "devices/e1000_regs.h"
#include "loop/loop.h"
#include "util/log.h"

#define E1000_TAG "e1000"

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

/* Why a frame being gathered will be dropped at EOP; the index is what a snapshot saves. */
enum { TX_BAD_NONE, TX_BAD_LONG, TX_BAD_RAM, TX_BAD_COUNT };
extern const char *const e1000_tx_bad_whys[TX_BAD_COUNT];

/* Registers that only store what the guest writes (under wmask): for the register model and for load's checks. */
struct e1000_plain {
	uint16_t reg;
	uint16_t field;               /* offset in struct e1000_regs */
	uint32_t wmask;
};
extern const struct e1000_plain e1000_plain_regs[];
extern const size_t e1000_plain_count;

/* e1000.c: callers hold e->lock unless said otherwise. */
void e1000_schedule(struct e1000 *e, uint32_t work);
void e1000_timer_arm(struct e1000 *e, uint64_t at_ns);
void e1000_update_irq(struct e1000 *e);
void e1000_check_deferred(struct e1000 *e);
bool e1000_ring(struct e1000 *e, const char *name, uint32_t bal, uint32_t bah, uint32_t len,
		       uint32_t head, uint32_t tail, uint64_t *base, uint32_t *count);
void e1000_size_bin(struct e1000 *e, unsigned first, size_t wire_len);
void e1000_msi_update(struct e1000 *e, bool fire);

/* e1000_tx.c */
void e1000_tx(struct e1000 *e, unsigned budget);
const char *e1000_tso_check(size_t tx_len, uint8_t popts, const struct e1000_txctx *c);
bool e1000_csum_insert(uint8_t *p, size_t len, unsigned start, unsigned end, unsigned at, bool l4);

#endif
