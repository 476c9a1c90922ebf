/*
 * Character backends for consoles: where a UART's bytes go and where its
 * input comes from. Devices call the ops; only backends touch host fds.
 */
#ifndef KESTREL_CHARDEV_H
#define KESTREL_CHARDEV_H

#include <stddef.h>
#include <stdint.h>

struct chardev;

struct chardev_ops {
	/* Write guest output; never blocks the caller for long, may drop on error. */
	void (*write)(struct chardev *cd, const uint8_t *buf, size_t len);
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
};

/* A guest must not fill the host's disk through its console file. */
#define CHARDEV_DEFAULT_LIMIT (64ull << 20)

/*
 * "stdio", "file:PATH" or "none". 0 or -errno; err gets a one-line reason.
 * file:PATH may name a regular file (capped at `limit` bytes, default
 * CHARDEV_DEFAULT_LIMIT), a FIFO or a terminal (written without blocking).
 */
int chardev_open(struct chardev *cd, const char *spec, char *err, size_t errlen);
void chardev_close(struct chardev *cd);

static inline void chardev_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	if (cd && cd->ops)
		cd->ops->write(cd, buf, len);
}

#endif
