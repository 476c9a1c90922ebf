/*
 * Character backends for consoles: where a UART's bytes go and where its
 * input comes from. Devices call the ops; only backends touch host fds.
 *
 * Input: chardev_attach() polls in_fd on a loop and hands what it reads to
 * the device's receive function; what the device cannot take yet waits
 * here (in_fd is not polled meanwhile) until the device calls
 * chardev_rx_drained(). With stdin a terminal in raw mode
 * (chardev_tty_raw), Ctrl-A starts an escape: Ctrl-A x asks to quit,
 * Ctrl-A Ctrl-A sends one Ctrl-A, anything else is swallowed.
 */
#ifndef KESTREL_CHARDEV_H
#define KESTREL_CHARDEV_H

#include "util/compiler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#include "loop/loop.h"

#define CHARDEV_ESCAPE 0x01 /* Ctrl-A */

struct chardev;

struct chardev_ops {
	/* Write guest output; never blocks the caller for long, may drop on error. */
	void (*write)(struct chardev *cd, const uint8_t *buf, size_t len);
};

/* Where input goes: the device's receive (returns bytes taken), and who hears Ctrl-A x. */
struct chardev_input {
	size_t (*rx)(void *opaque, const uint8_t *buf, size_t len);
	void *rx_opaque;
	void (*quit)(void *opaque);
	void *quit_opaque;
};

struct chardev {
	const struct chardev_ops *ops;
	int out_fd;             /* -1: discard */
	int in_fd;              /* -1: no input */
	int owns_out;
	int nonblock;           /* out_fd is a FIFO or terminal: never wait for its reader */
	int limited;            /* the limit marker line has been written */
	uint64_t limit;         /* most guest bytes written to a file:PATH; 0: no limit */
	uint64_t bytes_out, bytes_in;
	uint64_t bytes_dropped; /* over the limit, or refused by a slow reader */

	/* Input side, on the loop given to chardev_attach(). */
	struct loop *loop;
	struct chardev_input in;
	struct loop_work drained;
	bool in_registered;
	uint8_t pending[256];
	size_t pending_len, pending_off;
	bool escape;
	bool raw_tty;
	struct termios saved_tty;
};

/* A guest must not fill the host's disk through its console file. */
#define CHARDEV_DEFAULT_LIMIT (64ull << 20)

/*
 * "stdio", "file:PATH" or "none". 0 or -errno; err gets a one-line reason.
 * file:PATH may name a regular file (capped at `limit` bytes, default
 * CHARDEV_DEFAULT_LIMIT), a FIFO or a terminal (written without blocking).
 */
KESTREL_MUST_CHECK int chardev_open(struct chardev *cd, const char *spec, char *err, size_t errlen);
/* Detaches and restores the terminal first. */
void chardev_close(struct chardev *cd);

/*
 * Read in_fd on loop l (its thread) and feed in->rx. No input (in_fd -1),
 * or an in_fd the loop cannot poll (a regular file, /dev/null): nothing is
 * read (logged), 0. -EINVAL without in->rx, -EBUSY when attached already.
 */
KESTREL_MUST_CHECK int chardev_attach(struct chardev *cd, struct loop *l, const struct chardev_input *in);
/* With the loop stopped or on its thread. */
void chardev_detach(struct chardev *cd);
/* The device has room for input again. Any thread; a void *-taking callback for devices. */
void chardev_rx_drained(void *cd);

/* Put stdin, when it is this chardev's input and a terminal, in raw mode; restore it. */
void chardev_tty_raw(struct chardev *cd);
void chardev_tty_restore(struct chardev *cd);

static inline void chardev_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	if (cd && cd->ops)
		cd->ops->write(cd, buf, len);
}

#endif
