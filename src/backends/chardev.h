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
	uint64_t bytes_out, bytes_in;
};

/* "stdio", "file:PATH" or "none". 0 or -errno; err gets a one-line reason. */
int chardev_open(struct chardev *cd, const char *spec, char *err, size_t errlen);
void chardev_close(struct chardev *cd);

static inline void chardev_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	if (cd && cd->ops)
		cd->ops->write(cd, buf, len);
}

#endif
