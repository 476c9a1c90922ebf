#include "backends/chardev.h"
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

/* Said once in the file when the limit cuts the guest's output off. */
static void chardev_limit_reached(struct chardev *cd)
{
	char line[128];
	int n = snprintf(line, sizeof(line),
			 "\n[kestrel: console output limit of %llu bytes reached; further output dropped]\n",
			 (unsigned long long)cd->limit);

	cd->limited = 1;
	(void)file_write_nb(cd->out_fd, line, (size_t)n, false);
}

static void chardev_fd_write(struct chardev *cd, const uint8_t *buf, size_t len)
{
	size_t room = len, n;

	if (cd->out_fd < 0)
		return;
	if (cd->limit) {
		room = cd->bytes_out >= cd->limit ? 0 :
		       cd->limit - cd->bytes_out < len ? (size_t)(cd->limit - cd->bytes_out) : len;
	}
	if (cd->nonblock) {
		/* A FIFO or terminal whose reader is slow or gone must not stop the guest. */
		n = file_write_nb(cd->out_fd, buf, room, false);
	} else {
		for (n = 0; n < room;) {
			ssize_t w = write(cd->out_fd, buf + n, room - n);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break; /* a closed pipe must not stop the guest */
			n += (size_t)w;
		}
	}
	/* Read by the metrics on the main thread while vCPUs write. */
	__atomic_fetch_add(&cd->bytes_out, (uint64_t)n, __ATOMIC_RELAXED);
	__atomic_fetch_add(&cd->bytes_dropped, (uint64_t)(len - n), __ATOMIC_RELAXED);
	if (room < len && !cd->limited)
		chardev_limit_reached(cd);
}

static const struct chardev_ops chardev_fd_ops = { .write = chardev_fd_write };

int chardev_open(struct chardev *cd, const char *spec, char *err, size_t errlen)
{
	memset(cd, 0, sizeof(*cd));
	cd->ops = &chardev_fd_ops;
	cd->out_fd = -1;
	cd->in_fd = -1;
	if (!strcmp(spec, "stdio")) {
		cd->out_fd = STDOUT_FILENO;
		cd->in_fd = STDIN_FILENO;
		return 0;
	}
	if (!strcmp(spec, "none"))
		return 0;
	if (!strncmp(spec, "file:", 5) && spec[5]) {
		struct stat st;

		/* A FIFO or terminal is written without blocking; only a file grows on disk. */
		cd->out_fd = file_open(spec + 5, O_WRONLY | O_CREAT | O_TRUNC, 0644,
				       FILE_REG | FILE_FIFO | FILE_CHR, "console file", &st, err, errlen);
		if (cd->out_fd < 0)
			return cd->out_fd;
		cd->owns_out = 1;
		cd->nonblock = !S_ISREG(st.st_mode);
		cd->limit = S_ISREG(st.st_mode) ? CHARDEV_DEFAULT_LIMIT : 0;
		return 0;
	}
	snprintf(err, errlen, "unknown console '%s' (expected stdio, file:PATH or none)", spec);
	return -EINVAL;
}

void chardev_close(struct chardev *cd)
{
	chardev_detach(cd);
	chardev_tty_restore(cd);
	if (cd->owns_out && cd->out_fd >= 0)
		close(cd->out_fd);
	cd->out_fd = -1;
	cd->in_fd = -1;
}

/* ---- input ---- */

/* Move pending input into the device; stop reading in_fd while it is full. */
static void chardev_flush(struct chardev *cd)
{
	int e;

	while (cd->pending_off < cd->pending_len) {
		size_t n = cd->in.rx(cd->in.rx_opaque, cd->pending + cd->pending_off,
				     cd->pending_len - cd->pending_off);

		if (n == 0)
			break;
		cd->pending_off += n;
	}
	if (!cd->in_registered)
		return;
	if (cd->pending_off == cd->pending_len) {
		cd->pending_off = cd->pending_len = 0;
		e = loop_mod(cd->loop, cd->in_fd, EPOLLIN);
	} else {
		e = loop_mod(cd->loop, cd->in_fd, 0);
	}
	if (e < 0)
		log_warn("chardev", "console input: %s", strerror(-e));
}

static void chardev_in_cb(void *opaque, uint32_t events)
{
	struct chardev *cd = opaque;
	uint8_t buf[sizeof(cd->pending)];
	ssize_t n;

	(void)events;
	if (cd->pending_len == sizeof(cd->pending)) {
		chardev_flush(cd);
		return;
	}
	/* Only what fits: the rest stays in in_fd until the device drained. */
	n = read(cd->in_fd, buf, sizeof(buf) - cd->pending_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* EOF on stdin: the guest keeps running, we just stop listening. */
		loop_del(cd->loop, cd->in_fd);
		cd->in_registered = false;
		return;
	}
	cd->bytes_in += (uint64_t)n;
	for (ssize_t i = 0; i < n; i++) {
		uint8_t c = buf[i];

		if (cd->escape) {
			cd->escape = false;
			if (c == 'x' || c == 'X') {
				/* What came before still reaches the guest; the rest of this read is dropped. */
				if (cd->in.quit)
					cd->in.quit(cd->in.quit_opaque);
				break;
			}
			if (c != CHARDEV_ESCAPE)
				continue; /* unknown escapes are swallowed */
		} else if (c == CHARDEV_ESCAPE && cd->raw_tty) {
			cd->escape = true;
			continue;
		}
		cd->pending[cd->pending_len++] = c;
	}
	chardev_flush(cd);
}

static void chardev_drained_cb(void *opaque)
{
	chardev_flush(opaque);
}

void chardev_rx_drained(void *opaque)
{
	struct chardev *cd = opaque;
	struct loop *l = __atomic_load_n(&cd->loop, __ATOMIC_ACQUIRE);

	if (l)
		loop_work_post(l, &cd->drained);
}

int chardev_attach(struct chardev *cd, struct loop *l, const struct chardev_input *in)
{
	int rc;

	if (cd->loop)
		return -EBUSY;
	if (!in || !in->rx)
		return -EINVAL;
	cd->in = *in;
	cd->pending_len = cd->pending_off = 0;
	cd->escape = false;
	loop_work_init(&cd->drained, chardev_drained_cb, cd);
	if (cd->in_fd >= 0) {
		/* A regular file or /dev/null cannot be polled (EPERM): the guest runs without input. */
		rc = loop_add(l, cd->in_fd, EPOLLIN, chardev_in_cb, cd);
		if (rc < 0)
			log_info("chardev", "console input not pollable (%s); input disabled", strerror(-rc));
		cd->in_registered = rc == 0;
	}
	__atomic_store_n(&cd->loop, l, __ATOMIC_RELEASE);
	return 0;
}

void chardev_detach(struct chardev *cd)
{
	struct loop *l = cd->loop;

	if (!l)
		return;
	__atomic_store_n(&cd->loop, NULL, __ATOMIC_RELEASE);
	loop_work_cancel(l, &cd->drained);
	if (cd->in_registered)
		loop_del(l, cd->in_fd);
	cd->in_registered = false;
}

/* ---- terminal ---- */

void chardev_tty_raw(struct chardev *cd)
{
	struct termios t;

	if (cd->raw_tty || cd->in_fd != STDIN_FILENO || !isatty(STDIN_FILENO))
		return;
	if (tcgetattr(STDIN_FILENO, &cd->saved_tty) < 0)
		return;
	t = cd->saved_tty;
	cfmakeraw(&t);
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
		cd->raw_tty = true;
}

void chardev_tty_restore(struct chardev *cd)
{
	if (cd->raw_tty) {
		tcsetattr(STDIN_FILENO, TCSANOW, &cd->saved_tty);
		cd->raw_tty = false;
	}
}
