/*
 * vhost-user, front-end side (QEMU docs/interop/vhost-user.rst): the
 * messages a VMM sends to a back-end process that serves virtqueues
 * directly in guest memory, over a Unix stream socket with file descriptors
 * passed as SCM_RIGHTS.
 *
 * The back-end is untrusted: every reply is checked (version and reply
 * flags, request id, exact payload size, no file descriptors, fields that
 * must echo the request) before anything in it is used. A bad reply is an
 * error (-EPROTO) with one log line; the connection is then unusable
 * (framing may be lost) and vhu_conn_broken() says so.
 *
 * One copy of the protocol: kestrel's front-ends use it now, its own
 * back-ends later.
 */
#ifndef KESTREL_VHOST_USER_H
#define KESTREL_VHOST_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Front-end requests (vhost-user.rst, "Front-end message types"). */
enum vhu_request {
	VHU_GET_FEATURES = 1,
	VHU_SET_FEATURES = 2,
	VHU_SET_OWNER = 3,
	VHU_RESET_OWNER = 4,
	VHU_SET_MEM_TABLE = 5,
	VHU_SET_LOG_BASE = 6,
	VHU_SET_LOG_FD = 7,
	VHU_SET_VRING_NUM = 8,
	VHU_SET_VRING_ADDR = 9,
	VHU_SET_VRING_BASE = 10,
	VHU_GET_VRING_BASE = 11,
	VHU_SET_VRING_KICK = 12,
	VHU_SET_VRING_CALL = 13,
	VHU_SET_VRING_ERR = 14,
	VHU_GET_PROTOCOL_FEATURES = 15,
	VHU_SET_PROTOCOL_FEATURES = 16,
	VHU_GET_QUEUE_NUM = 17,
	VHU_SET_VRING_ENABLE = 18,
	VHU_GET_CONFIG = 24,
	VHU_SET_CONFIG = 25,
};

/* Header flags: bits 0-1 are the protocol version (1). */
#define VHU_VERSION         0x1u
#define VHU_VERSION_MASK    0x3u
#define VHU_FLAG_REPLY      (1u << 2)
#define VHU_FLAG_NEED_REPLY (1u << 3)

/* Virtio feature bit that says the back-end has protocol features. */
#define VHU_F_PROTOCOL_FEATURES 30

/* Protocol feature bits. */
#define VHU_PROTOCOL_F_MQ        0
#define VHU_PROTOCOL_F_REPLY_ACK 3
#define VHU_PROTOCOL_F_CONFIG    9

/* SET_VRING_KICK/CALL/ERR payload: bits 0-7 the ring, bit 8 "no fd sent". */
#define VHU_VRING_IDX_MASK 0xffu
#define VHU_VRING_NOFD     (1u << 8)

#define VHU_MAX_REGIONS    8     /* regions (and fds) in one SET_MEM_TABLE */
#define VHU_MAX_FDS        8     /* fds the front-end sends in one message */
#define VHU_MAX_CONFIG     256   /* GET/SET_CONFIG payload */
#define VHU_MAX_RINGS      (VHU_VRING_IDX_MASK + 1)

/* ---- wire layouts (little-endian host; x86-64 only) ---- */

struct vhu_hdr {
	uint32_t request;
	uint32_t flags;
	uint32_t size;       /* payload bytes after the header */
};
_Static_assert(sizeof(struct vhu_hdr) == 12, "vhost-user header is 12 bytes");

struct vhu_vring_state {
	uint32_t index;
	uint32_t num;
};
_Static_assert(sizeof(struct vhu_vring_state) == 8, "vring state is 8 bytes");

/* Ring addresses are in the front-end's address space (userspace_addr of the memory table). */
struct vhu_vring_addr {
	uint32_t index;
	uint32_t flags;      /* bit 0: log used-ring writes */
	uint64_t desc;
	uint64_t used;
	uint64_t avail;
	uint64_t log;
};
_Static_assert(sizeof(struct vhu_vring_addr) == 40, "vring address is 40 bytes");

struct vhu_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t uaddr;      /* where the front-end maps it */
	uint64_t mmap_offset;
};
_Static_assert(sizeof(struct vhu_mem_region) == 32, "memory region is 32 bytes");

struct vhu_mem_table {
	uint32_t nregions;
	uint32_t padding;
	struct vhu_mem_region regions[VHU_MAX_REGIONS];
};
_Static_assert(sizeof(struct vhu_mem_table) == 8 + 32 * VHU_MAX_REGIONS, "memory table layout");

struct vhu_config {
	uint32_t offset;
	uint32_t size;
	uint32_t flags;
	uint8_t payload[VHU_MAX_CONFIG];
};
_Static_assert(sizeof(struct vhu_config) == 12 + VHU_MAX_CONFIG, "config message layout");

union vhu_payload {
	uint64_t u64;
	struct vhu_vring_state state;
	struct vhu_vring_addr addr;
	struct vhu_mem_table mem;
	struct vhu_config config;
};

#define VHU_MAX_PAYLOAD sizeof(union vhu_payload)

struct vhu_msg {
	struct vhu_hdr hdr;
	union vhu_payload p;
} __attribute__((packed));
_Static_assert(sizeof(struct vhu_msg) == 12 + VHU_MAX_PAYLOAD, "no padding between header and payload");

/* ---- connection ---- */

struct vhu_conn {
	int fd;
	char name[32];              /* log tag */
	int timeout_ms;             /* for each reply; -1 waits forever */
	uint64_t features;          /* what SET_FEATURES last sent */
	uint64_t protocol_features; /* what SET_PROTOCOL_FEATURES last sent */
	bool broken;                /* a reply was bad or the socket failed: stop talking */
	/*
	 * Why the connection broke or the last request was refused, one line.
	 * With `quiet` set nothing is logged: the caller reports it (set-up
	 * errors go to the user as the command's one error line).
	 */
	char error[160];
	bool quiet;
};

#define VHU_DEFAULT_TIMEOUT_MS 5000

/* Connect to a back-end listening on `path` (client mode). 0, or -errno with a one-line message. */
int vhu_connect(struct vhu_conn *c, const char *path, const char *name, char *err, size_t errlen);
/* Take over a connected socket (tests, server mode later). */
void vhu_conn_init(struct vhu_conn *c, int fd, const char *name);
/* Close the socket; safe twice. */
void vhu_close(struct vhu_conn *c);
bool vhu_conn_broken(const struct vhu_conn *c);

/*
 * Check a reply already read: header flags (version 1, REPLY set, nothing
 * else), the request id it answers, the payload size (exactly want_size),
 * and that no fds came with it. 0, or -EPROTO with the reason in why.
 * Exposed for the fuzzer and the tests; the requests below use it.
 */
int vhu_check_reply(const struct vhu_hdr *h, uint32_t request, size_t want_size, unsigned nfds,
		    char *why, size_t whylen);

/*
 * Requests. Each returns 0 or -errno: -EPROTO for a malformed reply,
 * -EIO for a refused request (REPLY_ACK with a non-zero status),
 * -ETIMEDOUT when no reply came in time, -ECONNRESET when the back-end
 * closed the socket, -EINVAL for a request the caller got wrong (nothing
 * sent). Requests without a reply of their own ask for REPLY_ACK when it
 * was negotiated, so a refusal is seen at the request that caused it.
 */
int vhu_get_features(struct vhu_conn *c, uint64_t *features);
int vhu_set_features(struct vhu_conn *c, uint64_t features);
int vhu_get_protocol_features(struct vhu_conn *c, uint64_t *features);
int vhu_set_protocol_features(struct vhu_conn *c, uint64_t features);
int vhu_set_owner(struct vhu_conn *c);
/* One fd per region (each the memfd the region lives in); n <= VHU_MAX_REGIONS. */
int vhu_set_mem_table(struct vhu_conn *c, const struct vhu_mem_region *regions, const int *fds, unsigned n);
int vhu_set_vring_num(struct vhu_conn *c, unsigned ring, unsigned num);
int vhu_set_vring_addr(struct vhu_conn *c, const struct vhu_vring_addr *addr);
int vhu_set_vring_base(struct vhu_conn *c, unsigned ring, unsigned base);
/* Stops the ring; its next avail index comes back in *base. */
int vhu_get_vring_base(struct vhu_conn *c, unsigned ring, uint32_t *base);
/* request: VHU_SET_VRING_KICK, _CALL or _ERR; fd -1 sends "no fd" (polling mode). */
int vhu_set_vring_fd(struct vhu_conn *c, enum vhu_request request, unsigned ring, int fd);
int vhu_set_vring_enable(struct vhu_conn *c, unsigned ring, bool enable);
int vhu_get_queue_num(struct vhu_conn *c, uint64_t *num);
/* Needs VHU_PROTOCOL_F_CONFIG; len <= VHU_MAX_CONFIG. */
int vhu_get_config(struct vhu_conn *c, uint32_t offset, void *buf, uint32_t len);
int vhu_set_config(struct vhu_conn *c, uint32_t offset, const void *buf, uint32_t len);

const char *vhu_request_name(uint32_t request);

/* ---- steps every front-end takes at DRIVER_OK (one copy for blk and net) ---- */

struct guest_mem;

/*
 * SET_MEM_TABLE for guest RAM: every region with the guest RAM memfd, its
 * offset in it and the front-end's mapping address. -EINVAL (nothing sent)
 * when RAM is not a memfd or has more regions than one message carries.
 */
int vhu_set_mem_table_gm(struct vhu_conn *c, const struct guest_mem *gm);
/*
 * Hand one ring (addr->index) to the back-end: SET_VRING_NUM, _BASE, _ADDR,
 * _KICK (kick_fd), _CALL (call_fd), then SET_VRING_ENABLE (with protocol
 * features negotiated rings start disabled). *handed turns true once the
 * back-end has the ring (CALL done), so the caller stops it with
 * GET_VRING_BASE later even when the enable failed.
 */
int vhu_vring_start(struct vhu_conn *c, const struct vhu_vring_addr *addr, unsigned num, unsigned base,
		    int kick_fd, int call_fd, bool *handed);

#endif
