/*
 * The guest physical address map kestrel builds. One place, so the boot
 * builders, ACPI tables and devices agree.
 */
#ifndef KESTREL_LAYOUT_H
#define KESTREL_LAYOUT_H

#define KiB(x) ((unsigned long long)(x) << 10)
#define MiB(x) ((unsigned long long)(x) << 20)
#define GiB(x) ((unsigned long long)(x) << 30)

/* Low memory used by the boot code (all below 640 KiB). */
#define LAYOUT_GDT_ADDR        0x500ull     /* boot GDT */
#define LAYOUT_PVH_INFO_ADDR   0x6000ull    /* hvm_start_info + modules + memmap */
#define LAYOUT_ZERO_PAGE_ADDR  0x7000ull    /* Linux boot_params */
#define LAYOUT_PML4_ADDR       0x9000ull    /* identity page tables: PML4 */
#define LAYOUT_PDPT_ADDR       0xA000ull    /*                       PDPT */
#define LAYOUT_PD_ADDR         0xB000ull    /*   4 PDs, 2 MiB pages, 0..4 GiB */
#define LAYOUT_CMDLINE_ADDR    0x20000ull
#define LAYOUT_CMDLINE_MAX     0x10000ull   /* 64 KiB incl. NUL */
#define LAYOUT_STACK_TOP       0x8ff0ull    /* initial stack for the 64-bit entry */
#define LAYOUT_EBDA_START      0x9fc00ull   /* e820: reserved from here to 1 MiB */
#define LAYOUT_ACPI_ADDR       0xe0000ull   /* RSDP and tables, legacy scan range */
#define LAYOUT_ACPI_SIZE       0x20000ull
#define LAYOUT_HIMEM_START     0x100000ull  /* kernels load at 1 MiB */

/* The 32-bit hole: devices live between here and 4 GiB. RAM is split around it. */
#define LAYOUT_MMIO32_START    0xc0000000ull
#define LAYOUT_PCI_MMIO_START  0xc0000000ull /* PCI BAR window */
#define LAYOUT_PCI_MMIO_SIZE   MiB(256)
#define LAYOUT_VIRTIO_MMIO_START 0xd0000000ull /* virtio-mmio slots */
#define LAYOUT_ECAM_START      0xe0000000ull /* PCIe ECAM, bus 0 only */
#define LAYOUT_ECAM_SIZE       MiB(1)
#define LAYOUT_IOAPIC_ADDR     0xfec00000ull
#define LAYOUT_LAPIC_ADDR      0xfee00000ull
#define LAYOUT_TSS_ADDR        0xfffbd000ull /* KVM_SET_TSS_ADDR: 3 pages */
#define LAYOUT_IDENTITY_MAP_ADDR 0xfffbc000ull /* KVM_SET_IDENTITY_MAP_ADDR: 1 page */
#define LAYOUT_HIGH_RAM_START  GiB(4)

/* Port I/O map. */
#define LAYOUT_PORT_COM1       0x3f8
#define LAYOUT_IRQ_COM1        4
#define LAYOUT_PORT_I8042      0x60         /* data 0x60, command/status 0x64 */
#define LAYOUT_IRQ_KBD         1
#define LAYOUT_PORT_RTC        0x70
#define LAYOUT_IRQ_RTC         8
#define LAYOUT_PORT_PCI_CONF   0xcf8        /* 0xcf8..0xcff */
#define LAYOUT_PORT_DEBUG_EXIT 0x501        /* test guests: write status byte */
#define LAYOUT_PORT_ACPI_PM    0x600        /* ACPI sleep control/status (HW-reduced) */
#define LAYOUT_ACPI_S5_TYPE    5            /* SLP_TYP for \_S5 */
#define LAYOUT_ACPI_SCI_IRQ    9

/* First GSI handed to PCI INTx (IOAPIC pins 16..23). */
#define LAYOUT_PCI_IRQ_BASE    16
#define LAYOUT_IOAPIC_PINS     24
/* INTx routing, shared by the PCI host (Interrupt Line) and the DSDT _PRT. pin: 0=INTA..3=INTD */
#define LAYOUT_PCI_IRQ(slot, pin) (LAYOUT_PCI_IRQ_BASE + (((slot) + (pin)) & 7))

#endif
