/*
 * 16550A UART. Registers (offset, DLAB): 0 RBR/THR (DLL), 1 IER (DLM),
 * 2 IIR/FCR, 3 LCR, 4 MCR, 5 LSR, 6 MSR, 7 SCR. Transmission is instant, so
 * THR is always empty again by the time the guest looks.
 */
#include "devices/legacy/uart.h"
#include "snapshot/snap.h"

#include <errno.h>
#include <string.h>

#define IER_RDI   0x01  /* received data available */
#define IER_THRI  0x02  /* THR empty */
#define IER_RLSI  0x04  /* receiver line status */
#define IER_MSI   0x08  /* modem status */

#define IIR_NONE  0x01
#define IIR_MSI   0x00
#define IIR_THRI  0x02
#define IIR_RDI   0x04
#define IIR_RLSI  0x06
#define IIR_CTI   0x0c  /* character timeout */
#define IIR_FIFO  0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04

#define LCR_DLAB  0x80

#define MCR_DTR   0x01
#define MCR_RTS   0x02
#define MCR_OUT1  0x04
#define MCR_OUT2  0x08
#define MCR_LOOP  0x10

#define LSR_DR    0x01
#define LSR_OE    0x02
#define LSR_BI    0x10
#define LSR_THRE  0x20
#define LSR_TEMT  0x40
#define LSR_ERRORS (LSR_OE | LSR_BI)

#define MSR_DCTS  0x01
#define MSR_DDSR  0x02
#define MSR_TERI  0x04
#define MSR_DDCD  0x08
#define MSR_DELTA 0x0f
#define MSR_CTS   0x10
#define MSR_DSR   0x20
#define MSR_RI    0x40
#define MSR_DCD   0x80

void uart_init(struct uart *u, struct irq *irq, struct chardev *out)
{
	memset(u, 0, sizeof(*u));
	pthread_mutex_init(&u->lock, NULL);
	u->irq = irq;
	u->out = out;
	u->lsr = LSR_THRE | LSR_TEMT;
	/* A connected line with nothing else going on. */
	u->msr = MSR_DCD | MSR_DSR | MSR_CTS;
	u->rl = (struct log_ratelimit)LOG_RATELIMIT_INIT;
}

void uart_exit(struct uart *u)
{
	pthread_mutex_destroy(&u->lock);
}

static bool uart_fifo_on(const struct uart *u)
{
	return u->fcr & FCR_ENABLE;
}

static unsigned uart_capacity(const struct uart *u)
{
	return uart_fifo_on(u) ? UART_FIFO_SIZE : 1;
}

static unsigned uart_trigger(const struct uart *u)
{
	static const unsigned levels[] = { 1, 4, 8, 14 };

	return uart_fifo_on(u) ? levels[u->fcr >> 6] : 1;
}

/* Highest-priority pending interrupt, as IIR reports it (without FIFO bits). */
static uint8_t uart_iir_id(const struct uart *u)
{
	if ((u->ier & IER_RLSI) && (u->lsr & LSR_ERRORS))
		return IIR_RLSI;
	if ((u->ier & IER_RDI) && u->rx_count) {
		if (u->rx_count >= uart_trigger(u))
			return IIR_RDI;
		/* Below the trigger level: report the timeout at once rather than after 4 chars. */
		return uart_fifo_on(u) ? IIR_CTI : IIR_RDI;
	}
	if ((u->ier & IER_THRI) && u->thr_irq)
		return IIR_THRI;
	if ((u->ier & IER_MSI) && (u->msr & MSR_DELTA))
		return IIR_MSI;
	return IIR_NONE;
}

static void uart_update_irq(struct uart *u)
{
	bool level = uart_iir_id(u) != IIR_NONE && (u->mcr & MCR_OUT2);

	if (level != (u->irq ? u->irq->level : false))
		irq_set_level(u->irq, level);
}

static void uart_rx_push(struct uart *u, uint8_t c)
{
	if (u->rx_count >= uart_capacity(u)) {
		u->lsr |= LSR_OE;
		u->overruns++;
		return;
	}
	u->rx[(u->rx_head + u->rx_count) % UART_FIFO_SIZE] = c;
	u->rx_count++;
	u->rx_bytes++;
	u->lsr |= LSR_DR;
}

static uint8_t uart_rx_pop(struct uart *u, bool *drained)
{
	uint8_t c;

	if (!u->rx_count)
		return 0;
	c = u->rx[u->rx_head];
	u->rx_head = (u->rx_head + 1) % UART_FIFO_SIZE;
	u->rx_count--;
	if (!u->rx_count) {
		u->lsr &= ~LSR_DR;
		*drained = true;
	}
	return c;
}

size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&u->lock);
	/* In loopback the line is disconnected from the outside world. */
	if (!(u->mcr & MCR_LOOP)) {
		while (n < len && u->rx_count < uart_capacity(u))
			uart_rx_push(u, buf[n++]);
		uart_update_irq(u);
	}
	pthread_mutex_unlock(&u->lock);
	return n;
}

static uint8_t uart_loop_msr(uint8_t mcr)
{
	return (uint8_t)(((mcr & MCR_RTS) ? MSR_CTS : 0) | ((mcr & MCR_DTR) ? MSR_DSR : 0) |
			 ((mcr & MCR_OUT1) ? MSR_RI : 0) | ((mcr & MCR_OUT2) ? MSR_DCD : 0));
}

static void uart_set_mcr(struct uart *u, uint8_t mcr)
{
	uint8_t old_msr = u->msr, msr;

	u->mcr = mcr & 0x1f;
	msr = (u->mcr & MCR_LOOP) ? uart_loop_msr(u->mcr) : (MSR_DCD | MSR_DSR | MSR_CTS);
	/* Delta bits record changes since the last MSR read. */
	if ((msr ^ old_msr) & MSR_CTS)
		msr |= MSR_DCTS;
	if ((msr ^ old_msr) & MSR_DSR)
		msr |= MSR_DDSR;
	if ((msr ^ old_msr) & MSR_DCD)
		msr |= MSR_DDCD;
	if ((old_msr & MSR_RI) && !(msr & MSR_RI))
		msr |= MSR_TERI;
	u->msr = (uint8_t)(msr | (old_msr & MSR_DELTA));
}

static void uart_tx(struct uart *u, uint8_t c)
{
	if (u->mcr & MCR_LOOP) {
		uart_rx_push(u, c);
	} else {
		chardev_write(u->out, &c, 1);
		u->tx_bytes++;
	}
	u->lsr |= LSR_THRE | LSR_TEMT;
	u->thr_irq = true;
}

static void uart_set_fcr(struct uart *u, uint8_t v)
{
	if ((v & FCR_ENABLE) != (u->fcr & FCR_ENABLE) || (v & FCR_CLEAR_RX)) {
		u->rx_count = 0;
		u->rx_head = 0;
		u->lsr &= ~LSR_DR;
	}
	/* The clear bits self-clear; keep enable, DMA mode and trigger level. */
	u->fcr = v & 0xc9;
}

static uint64_t uart_read(void *opaque, uint64_t off, unsigned size)
{
	struct uart *u = opaque;
	bool drained = false;
	uint8_t v = 0;

	pthread_mutex_lock(&u->lock);
	switch (off) {
	case 0:
		v = (u->lcr & LCR_DLAB) ? u->dll : uart_rx_pop(u, &drained);
		break;
	case 1:
		v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
		break;
	case 2:
		v = uart_iir_id(u);
		/* Reading IIR acknowledges a THR-empty interrupt it reports. */
		if (v == IIR_THRI)
			u->thr_irq = false;
		if (uart_fifo_on(u))
			v |= IIR_FIFO;
		break;
	case 3:
		v = u->lcr;
		break;
	case 4:
		v = u->mcr;
		break;
	case 5:
		v = u->lsr;
		u->lsr &= ~LSR_ERRORS;  /* error bits clear on read */
		break;
	case 6:
		v = u->msr;
		u->msr &= ~MSR_DELTA;
		break;
	case 7:
		v = u->scr;
		break;
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	if (drained && u->rx_drained)
		u->rx_drained(u->rx_opaque);
	return v;
}

static void uart_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct uart *u = opaque;
	uint8_t v = (uint8_t)value;

	pthread_mutex_lock(&u->lock);
	switch (off) {
	case 0:
		if (u->lcr & LCR_DLAB)
			u->dll = v;
		else
			uart_tx(u, v);
		break;
	case 1:
		if (u->lcr & LCR_DLAB) {
			u->dlm = v;
		} else {
			/* Enabling THRI with an empty THR raises it straight away, as on hardware. */
			if ((v & IER_THRI) && !(u->ier & IER_THRI) && (u->lsr & LSR_THRE))
				u->thr_irq = true;
			u->ier = v & 0x0f;
		}
		break;
	case 2:
		uart_set_fcr(u, v);
		break;
	case 3:
		u->lcr = v;
		break;
	case 4:
		uart_set_mcr(u, v);
		break;
	case 5:
	case 6:
		break;  /* read-only; writes are ignored by real parts too */
	case 7:
		u->scr = v;
		break;
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

const struct bus_dev_ops uart_ops = { .read = uart_read, .write = uart_write };

/* ---- snapshot ---- */

void uart_save(const struct uart *u, struct snap_writer *w)
{
	pthread_mutex_t *lock = (pthread_mutex_t *)&u->lock;

	pthread_mutex_lock(lock);
	snap_put_u8(w, u->ier);
	snap_put_u8(w, u->lcr);
	snap_put_u8(w, u->mcr);
	snap_put_u8(w, u->lsr);
	snap_put_u8(w, u->msr);
	snap_put_u8(w, u->scr);
	snap_put_u8(w, u->dll);
	snap_put_u8(w, u->dlm);
	snap_put_u8(w, u->fcr);
	snap_put_bool(w, u->thr_irq);
	snap_put_u8(w, (uint8_t)u->rx_head);
	snap_put_u8(w, (uint8_t)u->rx_count);
	snap_put(w, u->rx, sizeof(u->rx));
	pthread_mutex_unlock(lock);
}

static int uart_refuse(struct snap_sec *s, const char *why, unsigned v)
{
	log_err("snapshot", "uart: %s (%u)", why, v);
	snap_sec_fail(s);
	return -EINVAL;
}

int uart_load(struct uart *u, struct snap_sec *s)
{
	struct uart t;   /* the registers only; the rest of u stays */

	if (s->version != UART_SNAP_VERSION)
		return uart_refuse(s, "unknown section version", s->version);
	t.ier = snap_get_u8(s);
	t.lcr = snap_get_u8(s);
	t.mcr = snap_get_u8(s);
	t.lsr = snap_get_u8(s);
	t.msr = snap_get_u8(s);
	t.scr = snap_get_u8(s);
	t.dll = snap_get_u8(s);
	t.dlm = snap_get_u8(s);
	t.fcr = snap_get_u8(s);
	t.thr_irq = snap_get_bool(s);
	t.rx_head = snap_get_u8(s);
	t.rx_count = snap_get_u8(s);
	snap_get(s, t.rx, sizeof(t.rx));
	if (s->err)
		return uart_refuse(s, "section truncated or malformed", (unsigned)s->len);
	/* The masks the register writes apply: anything else never came from a guest. */
	if (t.ier & ~0x0fu)
		return uart_refuse(s, "IER has reserved bits set", t.ier);
	if (t.mcr & ~0x1fu)
		return uart_refuse(s, "MCR has reserved bits set", t.mcr);
	if (t.fcr & ~0xc9u)
		return uart_refuse(s, "FCR has self-clearing bits set", t.fcr);
	if (t.rx_head >= UART_FIFO_SIZE)
		return uart_refuse(s, "RX FIFO head out of range", t.rx_head);
	if (t.rx_count > uart_capacity(&t))
		return uart_refuse(s, "RX FIFO count exceeds the FIFO", t.rx_count);

	pthread_mutex_lock(&u->lock);
	u->ier = t.ier;
	u->lcr = t.lcr;
	u->mcr = t.mcr;
	u->lsr = t.lsr;
	u->msr = t.msr;
	u->scr = t.scr;
	u->dll = t.dll;
	u->dlm = t.dlm;
	u->fcr = t.fcr;
	u->thr_irq = t.thr_irq;
	u->rx_head = t.rx_head;
	u->rx_count = t.rx_count;
	memcpy(u->rx, t.rx, sizeof(u->rx));
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return 0;
}
