/*
 * Intel 82540EM registers as the device model and its tests see them: BAR0
 * byte offsets, their bits, descriptor layouts, statistics indices, the
 * M88E1011 PHY's registers and the Microwire EEPROM's words. Numbers from
 * Intel's "PCI/PCI-X Family of Gigabit Ethernet Controllers Software
 * Developer's Manual".
 */
#ifndef KESTREL_E1000_REGS_H
#define KESTREL_E1000_REGS_H

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

#endif
