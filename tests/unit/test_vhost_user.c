/*
 * vhost-user front-end messages against a fake back-end on the other end of
 * a socketpair. The fake writes its reply before the front-end asks (the
 * socket buffers hold both), then reads and checks the request that was sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "vhost/vhost_user.h"

struct fixture {
	struct vhu_conn c;
	int peer;
};

static int setup(void **state)
{
	static struct fixture f;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	vhu_conn_init(&f.c, sv[0], "test-vhu");
	f.c.timeout_ms = 2000;
	f.peer = sv[1];
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	vhu_close(&f->c);
	if (f->peer >= 0)
		close(f->peer);
	return 0;
}

/* The fake back-end's reply: header fields as given, then payload; optional fd. */
static void reply(struct fixture *f, uint32_t req, uint32_t flags, uint32_t size, const void *payload,
		  size_t payload_len, int fd)
{
	uint8_t buf[12 + 512];
	struct vhu_hdr h = { .request = req, .flags = flags, .size = size };
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = buf, .iov_len = 12 + payload_len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	assert_true(payload_len <= 512);
	memcpy(buf, &h, 12);
	if (payload_len)
		memcpy(buf + 12, payload, payload_len);
	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.b;
		mh.msg_controllen = sizeof(u.b);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	assert_int_equal(sendmsg(f->peer, &mh, 0), (ssize_t)(12 + payload_len));
}

static void reply_u64(struct fixture *f, uint32_t req, uint64_t v)
{
	reply(f, req, VHU_VERSION | VHU_FLAG_REPLY, 8, &v, 8, -1);
}

/* Read one request on the fake's side; returns the number of fds that came with it (closed). */
static unsigned take_request(struct fixture *f, struct vhu_msg *m, int *fds_out)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * VHU_MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = m, .iov_len = 12 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b) };
	unsigned n = 0;

	memset(m, 0, sizeof(*m));
	assert_int_equal(recvmsg(f->peer, &mh, MSG_DONTWAIT), 12);
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fds_out)
				fds_out[n] = fd;
			else
				close(fd);
			n++;
		}
	}
	assert_true(m->hdr.size <= VHU_MAX_PAYLOAD);
	if (m->hdr.size)
		assert_int_equal(recv(f->peer, &m->p, m->hdr.size, MSG_DONTWAIT), (ssize_t)m->hdr.size);
	return n;
}

static void nothing_pending(struct fixture *f)
{
	char b;

	assert_int_equal(recv(f->peer, &b, 1, MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
}

static void enable_reply_ack(struct fixture *f)
{
	struct vhu_msg m;

	assert_int_equal(vhu_set_protocol_features(&f->c, 1ull << VHU_PROTOCOL_F_REPLY_ACK), 0);
	assert_int_equal(take_request(f, &m, NULL), 0);
	assert_int_equal(m.hdr.request, VHU_SET_PROTOCOL_FEATURES);
	assert_int_equal(m.hdr.flags, VHU_VERSION);   /* no ack asked before REPLY_ACK is in force */
	assert_int_equal(m.p.u64, 1ull << VHU_PROTOCOL_F_REPLY_ACK);
}

/* ---- good replies ---- */

static void test_get_features(void **state)
{
	struct fixture *f = *state;
	struct vhu_msg m;
	uint64_t v = 0;

	reply_u64(f, VHU_GET_FEATURES, 0x140000000ull);
	assert_int_equal(vhu_get_features(&f->c, &v), 0);
	assert_int_equal(v, 0x140000000ull);
	assert_int_equal(take_request(f, &m, NULL), 0);
	assert_int_equal(m.hdr.request, VHU_GET_FEATURES);
	assert_int_equal(m.hdr.flags, VHU_VERSION);
	assert_int_equal(m.hdr.size, 0);
	assert_false(vhu_conn_broken(&f->c));
}

static void test_set_features_without_ack(void **state)
{
	struct fixture *f = *state;
	struct vhu_msg m;

	assert_int_equal(vhu_set_features(&f->c, 0x100000001ull), 0);
	assert_int_equal(take_request(f, &m, NULL), 0);
	assert_int_equal(m.hdr.request, VHU_SET_FEATURES);
	assert_int_equal(m.hdr.flags, VHU_VERSION);
	assert_int_equal(m.hdr.size, 8);
	assert_int_equal(m.p.u64, 0x100000001ull);
	assert_int_equal(f->c.features, 0x100000001ull);
	nothing_pending(f);
}

static void test_mem_table_fds_and_ack(void **state)
{
	struct fixture *f = *state;
	struct vhu_mem_region r[2] = {
		{ .gpa = 0, .size = 0x10000, .uaddr = 0x7f0000000000, .mmap_offset = 0 },
		{ .gpa = 0x100000000ull, .size = 0x20000, .uaddr = 0x7f0000010000, .mmap_offset = 0x10000 },
	};
	int fds[2] = { eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC) };
	int got[VHU_MAX_FDS];
	struct vhu_msg m;

	enable_reply_ack(f);
	reply_u64(f, VHU_SET_MEM_TABLE, 0);
	assert_int_equal(vhu_set_mem_table(&f->c, r, fds, 2), 0);
	assert_int_equal(take_request(f, &m, got), 2);
	close(got[0]);
	close(got[1]);
	assert_int_equal(m.hdr.request, VHU_SET_MEM_TABLE);
	assert_int_equal(m.hdr.flags, VHU_VERSION | VHU_FLAG_NEED_REPLY);
	assert_int_equal(m.hdr.size, 8 + 2 * 32);
	assert_int_equal(m.p.mem.nregions, 2);
	assert_memory_equal(m.p.mem.regions, r, sizeof(r));
	close(fds[0]);
	close(fds[1]);
}

static void test_ack_refusal_is_eio_not_broken(void **state)
{
	struct fixture *f = *state;
	struct vhu_msg m;

	enable_reply_ack(f);
	reply_u64(f, VHU_SET_OWNER, 1);
	assert_int_equal(vhu_set_owner(&f->c), -EIO);
	assert_false(vhu_conn_broken(&f->c));
	assert_string_equal(f->c.error, "SET_OWNER refused (status 0x1)");
	take_request(f, &m, NULL);
	assert_int_equal(m.hdr.request, VHU_SET_OWNER);
	reply_u64(f, VHU_SET_OWNER, 0);
	assert_int_equal(vhu_set_owner(&f->c), 0);
}

static void test_vring_fd_and_nofd(void **state)
{
	struct fixture *f = *state;
	int efd = eventfd(0, EFD_CLOEXEC);
	struct vhu_msg m;

	assert_int_equal(vhu_set_vring_fd(&f->c, VHU_SET_VRING_KICK, 3, efd), 0);
	assert_int_equal(take_request(f, &m, NULL), 1);
	assert_int_equal(m.hdr.request, VHU_SET_VRING_KICK);
	assert_int_equal(m.p.u64, 3);
	assert_int_equal(vhu_set_vring_fd(&f->c, VHU_SET_VRING_CALL, 2, -1), 0);
	assert_int_equal(take_request(f, &m, NULL), 0);
	assert_int_equal(m.hdr.request, VHU_SET_VRING_CALL);
	assert_int_equal(m.p.u64, 2 | VHU_VRING_NOFD);
	assert_int_equal(vhu_set_vring_fd(&f->c, VHU_SET_VRING_NUM, 0, efd), -EINVAL);
	assert_int_equal(vhu_set_vring_fd(&f->c, VHU_SET_VRING_ERR, 256, efd), -EINVAL);
	nothing_pending(f);
	close(efd);
}

static void test_vring_setup_messages(void **state)
{
	struct fixture *f = *state;
	struct vhu_vring_addr a = { .index = 1, .desc = 0x1000, .used = 0x3000, .avail = 0x2000 };
	struct vhu_msg m;

	assert_int_equal(vhu_set_vring_num(&f->c, 1, 256), 0);
	take_request(f, &m, NULL);
	assert_int_equal(m.hdr.request, VHU_SET_VRING_NUM);
	assert_int_equal(m.p.state.index, 1);
	assert_int_equal(m.p.state.num, 256);
	assert_int_equal(vhu_set_vring_base(&f->c, 1, 7), 0);
	take_request(f, &m, NULL);
	assert_int_equal(m.hdr.request, VHU_SET_VRING_BASE);
	assert_int_equal(m.p.state.num, 7);
	assert_int_equal(vhu_set_vring_addr(&f->c, &a), 0);
	take_request(f, &m, NULL);
	assert_int_equal(m.hdr.request, VHU_SET_VRING_ADDR);
	assert_int_equal(m.hdr.size, 40);
	assert_memory_equal(&m.p.addr, &a, sizeof(a));
	assert_int_equal(vhu_set_vring_enable(&f->c, 1, true), 0);
	take_request(f, &m, NULL);
	assert_int_equal(m.hdr.request, VHU_SET_VRING_ENABLE);
	assert_int_equal(m.p.state.num, 1);
}

static void test_get_vring_base(void **state)
{
	struct fixture *f = *state;
	struct vhu_vring_state st = { .index = 0, .num = 42 };
	struct vhu_msg m;
	uint32_t base = 0;

	reply(f, VHU_GET_VRING_BASE, VHU_VERSION | VHU_FLAG_REPLY, 8, &st, 8, -1);
	assert_int_equal(vhu_get_vring_base(&f->c, 0, &base), 0);
	assert_int_equal(base, 42);
	take_request(f, &m, NULL);
	assert_int_equal(m.hdr.request, VHU_GET_VRING_BASE);
	assert_int_equal(m.p.state.index, 0);
}

static void test_get_set_config(void **state)
{
	struct fixture *f = *state;
	struct vhu_config cfg = { .offset = 0, .size = 8 };
	uint8_t out[8] = { 0 }, in[4] = { 1, 2, 3, 4 };
	struct vhu_msg m;

	memcpy(cfg.payload, "\x00\x10\x00\x00\x00\x00\x00\x00", 8);
	reply(f, VHU_GET_CONFIG, VHU_VERSION | VHU_FLAG_REPLY, 12 + 8, &cfg, 12 + 8, -1);
	assert_int_equal(vhu_get_config(&f->c, 0, out, 8), 0);
	assert_memory_equal(out, cfg.payload, 8);
	take_request(f, &m, NULL);
	assert_int_equal(m.hdr.request, VHU_GET_CONFIG);
	assert_int_equal(m.hdr.size, 12 + 8);
	assert_int_equal(m.p.config.size, 8);

	assert_int_equal(vhu_set_config(&f->c, 20, in, 4), 0);
	take_request(f, &m, NULL);
	assert_int_equal(m.hdr.request, VHU_SET_CONFIG);
	assert_int_equal(m.p.config.offset, 20);
	assert_memory_equal(m.p.config.payload, in, 4);

	assert_int_equal(vhu_get_config(&f->c, 0, out, VHU_MAX_CONFIG + 1), -EINVAL);
	assert_int_equal(vhu_get_config(&f->c, 0, out, 0), -EINVAL);
	nothing_pending(f);
}

static void test_queue_num_and_protocol_features(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0;

	reply_u64(f, VHU_GET_PROTOCOL_FEATURES, 0x208);
	assert_int_equal(vhu_get_protocol_features(&f->c, &v), 0);
	assert_int_equal(v, 0x208);
	reply_u64(f, VHU_GET_QUEUE_NUM, 4);
	assert_int_equal(vhu_get_queue_num(&f->c, &v), 0);
	assert_int_equal(v, 4);
}

/* ---- malformed replies: -EPROTO, the connection given up, nothing used ---- */

static void expect_broken(struct fixture *f, int rc)
{
	assert_int_equal(rc, -EPROTO);
	assert_true(vhu_conn_broken(&f->c));
	/* Nothing more is sent on a broken connection. */
	assert_int_equal(vhu_set_owner(&f->c), -ENOTCONN);
}

static void test_bad_version(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0x55, r = 7;

	reply(f, VHU_GET_FEATURES, 2 | VHU_FLAG_REPLY, 8, &r, 8, -1);
	expect_broken(f, vhu_get_features(&f->c, &v));
	assert_string_equal(f->c.error, "GET_FEATURES: version 2, not 1");
	assert_int_equal(v, 0x55);
}

static void test_missing_reply_flag(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0, r = 7;

	reply(f, VHU_GET_FEATURES, VHU_VERSION, 8, &r, 8, -1);
	expect_broken(f, vhu_get_features(&f->c, &v));
}

static void test_unknown_flags(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0, r = 7;

	reply(f, VHU_GET_FEATURES, VHU_VERSION | VHU_FLAG_REPLY | 0x100, 8, &r, 8, -1);
	expect_broken(f, vhu_get_features(&f->c, &v));
}

static void test_wrong_request_id(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0;

	reply_u64(f, VHU_GET_PROTOCOL_FEATURES, 1);
	expect_broken(f, vhu_get_features(&f->c, &v));
}

static void test_wrong_size(void **state)
{
	struct fixture *f = *state;
	uint32_t r = 1;
	uint64_t v = 0;

	reply(f, VHU_GET_FEATURES, VHU_VERSION | VHU_FLAG_REPLY, 4, &r, 4, -1);
	expect_broken(f, vhu_get_features(&f->c, &v));
}

static void test_oversized_payload(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0;

	/* Claims 1 MiB: refused from the header, before any of it is read. */
	reply(f, VHU_GET_FEATURES, VHU_VERSION | VHU_FLAG_REPLY, 1u << 20, NULL, 0, -1);
	expect_broken(f, vhu_get_features(&f->c, &v));
}

static void test_reply_with_fd(void **state)
{
	struct fixture *f = *state;
	int efd = eventfd(0, EFD_CLOEXEC);
	uint64_t v = 0, r = 1;
	int before, after;

	/* The fd the back-end slips in must be closed, not leaked. */
	reply(f, VHU_GET_FEATURES, VHU_VERSION | VHU_FLAG_REPLY, 8, &r, 8, efd);
	close(efd);
	before = dup(0);   /* the lowest free fd number while the fd is in flight */
	close(before);
	expect_broken(f, vhu_get_features(&f->c, &v));
	after = dup(0);
	close(after);
	assert_int_equal(after, before);
}

static void test_bad_ack_size(void **state)
{
	struct fixture *f = *state;
	uint32_t r = 0;

	enable_reply_ack(f);
	reply(f, VHU_SET_VRING_NUM, VHU_VERSION | VHU_FLAG_REPLY, 4, &r, 4, -1);
	expect_broken(f, vhu_set_vring_num(&f->c, 0, 128));
}

static void test_vring_base_wrong_ring(void **state)
{
	struct fixture *f = *state;
	struct vhu_vring_state st = { .index = 1, .num = 5 };
	uint32_t base = 99;

	reply(f, VHU_GET_VRING_BASE, VHU_VERSION | VHU_FLAG_REPLY, 8, &st, 8, -1);
	expect_broken(f, vhu_get_vring_base(&f->c, 0, &base));
	assert_int_equal(base, 99);
}

static void test_vring_base_too_big(void **state)
{
	struct fixture *f = *state;
	struct vhu_vring_state st = { .index = 0, .num = 0x10000 };
	uint32_t base = 99;

	reply(f, VHU_GET_VRING_BASE, VHU_VERSION | VHU_FLAG_REPLY, 8, &st, 8, -1);
	expect_broken(f, vhu_get_vring_base(&f->c, 0, &base));
	assert_int_equal(base, 99);
}

static void test_config_wrong_window(void **state)
{
	struct fixture *f = *state;
	struct vhu_config cfg = { .offset = 4, .size = 8 };
	uint8_t out[8] = { 0 };

	reply(f, VHU_GET_CONFIG, VHU_VERSION | VHU_FLAG_REPLY, 12 + 8, &cfg, 12 + 8, -1);
	expect_broken(f, vhu_get_config(&f->c, 0, out, 8));
}

static void test_config_short(void **state)
{
	struct fixture *f = *state;
	struct vhu_config cfg = { .offset = 0, .size = 4 };
	uint8_t out[8] = { 0 };

	reply(f, VHU_GET_CONFIG, VHU_VERSION | VHU_FLAG_REPLY, 12 + 4, &cfg, 12 + 4, -1);
	expect_broken(f, vhu_get_config(&f->c, 0, out, 8));
}

/* ---- a back-end that goes away or hangs ---- */

static void test_peer_closed(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0;

	close(f->peer);
	f->peer = -1;
	assert_int_equal(vhu_get_features(&f->c, &v), -ECONNRESET);
	assert_true(vhu_conn_broken(&f->c));
}

static void test_cut_short(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0;

	/* Header promises 8 bytes, then the back-end dies. */
	reply(f, VHU_GET_FEATURES, VHU_VERSION | VHU_FLAG_REPLY, 8, NULL, 0, -1);
	shutdown(f->peer, SHUT_WR);
	assert_int_equal(vhu_get_features(&f->c, &v), -ECONNRESET);
	assert_true(vhu_conn_broken(&f->c));
}

static void test_timeout(void **state)
{
	struct fixture *f = *state;
	uint64_t v = 0;

	f->c.timeout_ms = 50;
	assert_int_equal(vhu_get_features(&f->c, &v), -ETIMEDOUT);
	assert_true(vhu_conn_broken(&f->c));
}

static void test_bad_arguments(void **state)
{
	struct fixture *f = *state;
	struct vhu_mem_region r = { .size = 4096 };
	int fd = -1;

	assert_int_equal(vhu_set_mem_table(&f->c, &r, &fd, 0), -EINVAL);
	assert_int_equal(vhu_set_mem_table(&f->c, &r, &fd, 1), -EINVAL);
	assert_int_equal(vhu_set_mem_table(&f->c, &r, &fd, VHU_MAX_REGIONS + 1), -EINVAL);
	assert_int_equal(vhu_set_vring_num(&f->c, VHU_MAX_RINGS, 1), -EINVAL);
	nothing_pending(f);
	assert_false(vhu_conn_broken(&f->c));
}

static void test_check_reply_direct(void **state)
{
	struct vhu_hdr h = { .request = VHU_GET_FEATURES, .flags = VHU_VERSION | VHU_FLAG_REPLY, .size = 8 };
	char why[128];

	(void)state;
	assert_int_equal(vhu_check_reply(&h, VHU_GET_FEATURES, 8, 0, why, sizeof(why)), 0);
	assert_int_equal(vhu_check_reply(&h, VHU_GET_FEATURES, 8, 1, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "file descriptor"));
	assert_int_equal(vhu_check_reply(&h, VHU_GET_QUEUE_NUM, 8, 0, why, sizeof(why)), -EPROTO);
	assert_non_null(strstr(why, "GET_FEATURES"));
	assert_string_equal(vhu_request_name(999), "unknown");
}

static void test_connect_errors(void **state)
{
	struct vhu_conn c;
	char err[256], longpath[200];

	(void)state;
	assert_int_equal(vhu_connect(&c, "/nonexistent/kestrel-vhu.sock", "t", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "cannot connect"));
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	assert_int_equal(vhu_connect(&c, longpath, "t", err, sizeof(err)), -ENAMETOOLONG);
	assert_true(vhu_conn_broken(&c));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_get_features),
		T(test_set_features_without_ack),
		T(test_mem_table_fds_and_ack),
		T(test_ack_refusal_is_eio_not_broken),
		T(test_vring_fd_and_nofd),
		T(test_vring_setup_messages),
		T(test_get_vring_base),
		T(test_get_set_config),
		T(test_queue_num_and_protocol_features),
		T(test_bad_version),
		T(test_missing_reply_flag),
		T(test_unknown_flags),
		T(test_wrong_request_id),
		T(test_wrong_size),
		T(test_oversized_payload),
		T(test_reply_with_fd),
		T(test_bad_ack_size),
		T(test_vring_base_wrong_ring),
		T(test_vring_base_too_big),
		T(test_config_wrong_window),
		T(test_config_short),
		T(test_peer_closed),
		T(test_cut_short),
		T(test_timeout),
		T(test_bad_arguments),
		cmocka_unit_test(test_check_reply_direct),
		cmocka_unit_test(test_connect_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
