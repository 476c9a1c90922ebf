/* SPDX-License-Identifier: MIT */
/* Polled 16550 on COM1 and a small printf. */
#include "guest.h"

#define UART_THR 0 /* DLAB=0 */
#define UART_DLL 0 /* DLAB=1 */
#define UART_IER 1
#define UART_DLM 1 /* DLAB=1 */
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_THRE 0x20
#define LCR_8N1  0x03
#define LCR_DLAB 0x80
#define MCR_DTR_RTS 0x03

/* A VMM without a UART reads 0xff (THRE set); a broken one is given up on
 * after this many polls so a guest never hangs on its console. */
#define THRE_POLL_LIMIT 100000

static struct spinlock console_lock;

/* Sets every register a hostile guest may have scribbled on: DLAB off,
 * 115200 8N1, no interrupts, FIFO on, no loopback. */
void uart_init(void)
{
	outb(PORT_COM1 + UART_LCR, LCR_DLAB);
	outb(PORT_COM1 + UART_DLL, 1);
	outb(PORT_COM1 + UART_DLM, 0);
	outb(PORT_COM1 + UART_LCR, LCR_8N1);
	outb(PORT_COM1 + UART_IER, 0);
	outb(PORT_COM1 + UART_FCR, 0x07);
	outb(PORT_COM1 + UART_MCR, MCR_DTR_RTS);
}

void uart_putc(char c)
{
	for (int i = 0; i < THRE_POLL_LIMIT; i++)
		if (inb(PORT_COM1 + UART_LSR) & LSR_THRE)
			break;
	outb(PORT_COM1 + UART_THR, (uint8_t)c);
}

static void uart_write(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			uart_putc('\r');
		uart_putc(s[i]);
	}
}

void guest_puts(const char *s)
{
	spin_lock(&console_lock);
	uart_write(s, strlen(s));
	spin_unlock(&console_lock);
}

void console_break_lock(void)
{
	spin_unlock(&console_lock);
}

/* --- formatting ------------------------------------------------------------ */

struct out {
	char *buf;
	size_t size;
	size_t len; /* would-be length, like snprintf */
};

static void out_c(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void out_num(struct out *o, uint64_t v, unsigned base, bool neg, bool upper,
		    int width, bool zero, bool left)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	int len = n + (neg ? 1 : 0);
	if (neg && zero)
		out_c(o, '-');
	if (!left)
		for (; width > len; width--)
			out_c(o, zero ? '0' : ' ');
	if (neg && !zero)
		out_c(o, '-');
	while (n)
		out_c(o, tmp[--n]);
	if (left)
		for (; width > len; width--)
			out_c(o, ' ');
}

int guest_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			out_c(&o, *fmt);
			continue;
		}
		fmt++;
		bool zero = false, left = false;
		int width = 0, lng = 0;
		for (;; fmt++) {
			if (*fmt == '0')
				zero = true;
			else if (*fmt == '-')
				left = true;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		for (;; fmt++) {
			if (*fmt == 'l')
				lng++;
			else if (*fmt == 'z')
				lng = 2;
			else
				break;
		}
		if (left)
			zero = false;

		uint64_t u;
		int64_t s;
		switch (*fmt) {
		case 'd':
		case 'i':
			s = lng ? va_arg(ap, long) : va_arg(ap, int);
			out_num(&o, s < 0 ? -(uint64_t)s : (uint64_t)s, 10, s < 0, false,
				width, zero, left);
			break;
		case 'u':
		case 'x':
		case 'X':
			u = lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
			out_num(&o, u, *fmt == 'u' ? 10 : 16, false, *fmt == 'X', width, zero,
				left);
			break;
		case 'p':
			out_c(&o, '0');
			out_c(&o, 'x');
			out_num(&o, (uintptr_t)va_arg(ap, void *), 16, false, false, width, zero,
				left);
			break;
		case 'c':
			out_c(&o, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			int n;
			if (!str)
				str = "(null)";
			n = (int)strlen(str);
			if (!left)
				for (; width > n; width--)
					out_c(&o, ' ');
			while (*str)
				out_c(&o, *str++);
			if (left)
				for (; width > n; width--)
					out_c(&o, ' ');
			break;
		}
		case '%':
			out_c(&o, '%');
			break;
		case 0:
			fmt--;
			break;
		default:
			out_c(&o, '%');
			out_c(&o, *fmt);
			break;
		}
	}
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return (int)o.len;
}

int guest_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = guest_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

int guest_printf(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = guest_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	spin_lock(&console_lock);
	uart_write(buf, strlen(buf));
	spin_unlock(&console_lock);
	return n;
}
