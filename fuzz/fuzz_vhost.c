/*
 * The vhost-user front-end's reply parsing: the input is what a hostile
 * back-end writes on the socket. Byte 0 picks the request the front-end
 * makes (and, bit 7, whether an fd rides along with the reply); the rest is
 * the reply stream. Every request must end in 0 or a clean error.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/eventfd.h>
#include <sys/socket.h>

#include "vhost/vhost_user.h"

static void send_reply(int fd, const uint8_t *data, size_t len, bool with_fd)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int efd = -1;

	if (with_fd && len) {
		struct cmsghdr *cm;

		efd = eventfd(0, EFD_CLOEXEC);
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.b;
		mh.msg_controllen = sizeof(u.b);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &efd, sizeof(int));
	}
	if (len && sendmsg(fd, &mh, MSG_DONTWAIT) < 0)
		abort();   /* inputs are capped below the socket buffer */
	if (efd >= 0)
		close(efd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vhu_conn c;
	uint8_t cfg[VHU_MAX_CONFIG];
	uint64_t v;
	uint32_t base;
	int sv[2], rc = 0;

	if (size < 1 || size > 4096)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	send_reply(sv[1], data + 1, size - 1, data[0] & 0x80);
	/* EOF after the input: a short reply ends at once instead of waiting for the timeout. */
	shutdown(sv[1], SHUT_WR);
	vhu_conn_init(&c, sv[0], "fuzz");
	c.timeout_ms = 1000;
	c.quiet = true;   /* a log line per input would only slow the fuzzer */
	if (data[0] & 0x40)
		c.protocol_features = 1ull << VHU_PROTOCOL_F_REPLY_ACK;
	switch (data[0] & 0x7) {
	case 0: rc = vhu_get_features(&c, &v); break;
	case 1: rc = vhu_get_protocol_features(&c, &v); break;
	case 2: rc = vhu_get_queue_num(&c, &v); break;
	case 3: rc = vhu_get_vring_base(&c, data[0] >> 3 & 1, &base); break;
	case 4: rc = vhu_get_config(&c, 0, cfg, 60); break;
	case 5: rc = vhu_set_owner(&c); break;
	case 6: rc = vhu_set_vring_num(&c, 0, 256); break;
	case 7: rc = vhu_get_config(&c, 8, cfg, 1 + (data[0] >> 3 & 7)); break;
	}
	/* A broken connection refuses everything after it. */
	if (rc == -EPROTO && vhu_set_owner(&c) != -ENOTCONN)
		abort();
	vhu_close(&c);
	close(sv[1]);
	return 0;
}
