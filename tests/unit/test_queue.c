/*
 * Split virtqueue: parsing of well-formed chains, the used ring, interrupt
 * and kick suppression, ring validation at activation, and every way a
 * hostile driver can break the protocol (-EIO, sticky until vq_reset).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "virtio/queue.h"
#include "vring_driver.h"

struct t {
	struct vrd d;
	struct virtq vq;
	struct vq_elem *e;
};

static void t_init_ram(struct t *t, uint16_t size, uint64_t ram, bool event_idx, bool indirect)
{
	assert_int_equal(vrd_init_ram(&t->d, size, ram), 0);
	assert_int_equal(vrd_setup_vq(&t->d, &t->vq, event_idx, indirect), 0);
	t->e = calloc(1, sizeof(*t->e));
	assert_non_null(t->e);
}

static void t_init(struct t *t, uint16_t size, bool event_idx, bool indirect)
{
	t_init_ram(t, size, VRD_RAM_SIZE, event_idx, indirect);
}

static void t_exit(struct t *t)
{
	free(t->e);
	vrd_exit(&t->d);
}

/* The next pop is a protocol violation (for the reason `why`): -EIO, broken, nothing consumed, and it sticks. */
static void expect_violation(struct t *t, const char *why)
{
	uint16_t last = t->vq.last_avail;

	assert_false(t->vq.broken);
	assert_int_equal(vq_pop(&t->vq, t->e), -EIO);
	assert_true(t->vq.broken);
	assert_non_null(t->vq.error);
	if (!strstr(t->vq.error, why))
		fail_msg("broke for \"%s\", expected \"%s\"", t->vq.error, why);
	assert_int_equal(t->vq.last_avail, last);
	assert_int_equal(vq_pop(&t->vq, t->e), -EIO);
	assert_false(vq_has_work(&t->vq));
}

/* iov[i] is the host view of guest range [gpa, gpa+len). */
static void expect_seg(struct t *t, unsigned i, uint64_t gpa, uint32_t len)
{
	assert_int_equal(t->e->gpa[i], gpa);
	assert_int_equal(t->e->iov[i].iov_len, len);
	assert_ptr_equal(t->e->iov[i].iov_base, t->d.ram + (gpa - t->d.ram_gpa));
}

/* ---- well-formed chains ---- */

static void test_single_buffer(void **state)
{
	struct t t;
	char out[8] = { 0 };
	struct vrd_buf b;
	uint16_t head;

	t_init(&t, 16, false, false);
	assert_false(vq_has_work(&t.vq));
	assert_int_equal(vq_pop(&t.vq, t.e), -ENOENT);

	b = vrd_buf_data(&t.d, "hello", 5, false);
	head = vrd_add_chain(&t.d, &b, 1);
	vrd_publish(&t.d, head);
	assert_true(vq_has_work(&t.vq));

	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->head, head);
	assert_int_equal(t.e->out_num, 1);
	assert_int_equal(t.e->in_num, 0);
	assert_int_equal(t.e->out_len, 5);
	assert_int_equal(t.e->in_len, 0);
	expect_seg(&t, 0, b.gpa, 5);
	assert_int_equal(vq_copy_from_out(t.e, 0, out, sizeof(out)), 5);
	assert_memory_equal(out, "hello", 5);
	assert_int_equal(t.vq.last_avail, 1);

	assert_false(vq_has_work(&t.vq));
	assert_int_equal(vq_pop(&t.vq, t.e), -ENOENT);
	assert_false(t.vq.broken);
	t_exit(&t);
}

static void test_chain_out_in_and_copies(void **state)
{
	struct t t;
	uint8_t hdr[16], body[100], got[200], pattern[300];
	struct vrd_buf b[4];
	uint16_t head;

	for (unsigned i = 0; i < sizeof(hdr); i++)
		hdr[i] = (uint8_t)i;
	for (unsigned i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)(0x80 + i);
	for (unsigned i = 0; i < sizeof(pattern); i++)
		pattern[i] = (uint8_t)(i * 7 + 1);

	t_init(&t, 8, false, false);
	b[0] = vrd_buf_data(&t.d, hdr, sizeof(hdr), false);
	b[1] = vrd_buf_data(&t.d, body, sizeof(body), false);
	b[2] = vrd_buf_data(&t.d, NULL, 200, true);
	b[3] = vrd_buf_data(&t.d, NULL, 1, true);
	head = vrd_add_chain(&t.d, b, 4);
	vrd_publish(&t.d, head);

	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->head, head);
	assert_int_equal(t.e->out_num, 2);
	assert_int_equal(t.e->in_num, 2);
	assert_int_equal(t.e->out_len, 116);
	assert_int_equal(t.e->in_len, 201);
	for (unsigned i = 0; i < 4; i++)
		expect_seg(&t, i, b[i].gpa, b[i].len);

	/* Reads across the header/body boundary, from an offset. */
	assert_int_equal(vq_copy_from_out(t.e, 10, got, 20), 20);
	assert_memory_equal(got, hdr + 10, 6);
	assert_memory_equal(got + 6, body, 14);
	/* Short when the out part ends; nothing past its end. */
	assert_int_equal(vq_copy_from_out(t.e, 100, got, sizeof(got)), 16);
	assert_memory_equal(got, body + 84, 16);
	assert_int_equal(vq_copy_from_out(t.e, 116, got, 1), 0);
	assert_int_equal(vq_copy_from_out(t.e, 1000, got, 1), 0);

	/* Writes go to the in part only, across its segments, short at the end. */
	assert_int_equal(vq_copy_to_in(t.e, 0, pattern, sizeof(pattern)), 201);
	assert_memory_equal(vrd_host(&t.d, b[2].gpa, 200), pattern, 200);
	assert_int_equal(*(uint8_t *)vrd_host(&t.d, b[3].gpa, 1), pattern[200]);
	assert_memory_equal(vrd_host(&t.d, b[0].gpa, 16), hdr, 16);
	assert_memory_equal(vrd_host(&t.d, b[1].gpa, 100), body, 100);
	assert_int_equal(vq_copy_to_in(t.e, 200, "Z", 1), 1);
	assert_int_equal(*(uint8_t *)vrd_host(&t.d, b[3].gpa, 1), 'Z');
	assert_int_equal(vq_copy_to_in(t.e, 201, "Y", 1), 0);
	assert_int_equal(vq_copy_to_in(t.e, 195, pattern, 0), 0);
	t_exit(&t);
}

static void test_indirect_table(void **state)
{
	struct t t;
	struct vrd_buf b[3];
	uint16_t head;

	t_init(&t, 4, false, true);
	b[0] = vrd_buf_data(&t.d, "abc", 3, false);
	b[1] = vrd_buf_data(&t.d, "defgh", 5, false);
	b[2] = vrd_buf_data(&t.d, NULL, 64, true);
	head = vrd_add_indirect(&t.d, b, 3);
	vrd_publish(&t.d, head);

	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->head, head);
	assert_int_equal(t.e->out_num, 2);
	assert_int_equal(t.e->in_num, 1);
	assert_int_equal(t.e->out_len, 8);
	assert_int_equal(t.e->in_len, 64);
	for (unsigned i = 0; i < 3; i++)
		expect_seg(&t, i, b[i].gpa, b[i].len);
	/* Only one descriptor of the queue's own table was used. */
	assert_int_equal(t.d.next_desc, 1);
	t_exit(&t);
}

/* The WRITE flag on the descriptor that points at a table is ignored (2.7.5.3.2). */
static void test_indirect_pointer_write_flag_ignored(void **state)
{
	struct t t;
	uint64_t table, buf;

	t_init(&t, 4, false, true);
	buf = vrd_alloc(&t.d, 32);
	table = vrd_alloc(&t.d, 32);
	vrd_write_desc(&t.d, table, 0, buf, 16, VRING_DESC_F_NEXT, 1);
	vrd_write_desc(&t.d, table, 1, buf + 16, 16, VRING_DESC_F_WRITE, 0);
	vrd_set_desc(&t.d, 0, table, 32, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
	vrd_publish(&t.d, 0);
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->out_num, 1);
	assert_int_equal(t.e->in_num, 1);
	t_exit(&t);
}

/* Direct chains, indirect ones and direct descriptors ending in a table, in one queue. */
static void test_mixed_direct_and_indirect(void **state)
{
	struct t t;
	struct vrd_buf b[5];
	uint16_t h1, h2, h3;

	t_init(&t, 16, true, true);
	for (unsigned i = 0; i < 5; i++)
		b[i] = vrd_buf_data(&t.d, NULL, 10u + i, i >= 3);

	h1 = vrd_add_chain(&t.d, b, 5);
	h2 = vrd_add_indirect(&t.d, b + 1, 3);
	h3 = vrd_add(&t.d, b, 5, 3);   /* b0, b1 direct, then a table with b2, b3, b4 */
	vrd_publish(&t.d, h1);
	vrd_publish(&t.d, h2);
	vrd_publish(&t.d, h3);

	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->head, h1);
	assert_int_equal(t.e->out_num, 3);
	assert_int_equal(t.e->in_num, 2);
	for (unsigned i = 0; i < 5; i++)
		expect_seg(&t, i, b[i].gpa, b[i].len);

	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->head, h2);
	assert_int_equal(t.e->out_num, 2);
	assert_int_equal(t.e->in_num, 1);
	assert_int_equal(t.e->out_len, 11 + 12);
	assert_int_equal(t.e->in_len, 13);
	for (unsigned i = 0; i < 3; i++)
		expect_seg(&t, i, b[i + 1].gpa, b[i + 1].len);

	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->head, h3);
	assert_int_equal(t.e->out_num, 3);
	assert_int_equal(t.e->in_num, 2);
	assert_int_equal(t.e->out_len, 10 + 11 + 12);
	assert_int_equal(t.e->in_len, 13 + 14);
	for (unsigned i = 0; i < 5; i++)
		expect_seg(&t, i, b[i].gpa, b[i].len);

	assert_int_equal(vq_pop(&t.vq, t.e), -ENOENT);
	t_exit(&t);
}

/* Zero-length buffers are accepted and skipped; their address does not matter. */
static void test_zero_length_buffers_skipped(void **state)
{
	struct t t;
	uint64_t buf;

	t_init(&t, 8, false, false);
	buf = vrd_alloc(&t.d, 64);
	vrd_set_desc(&t.d, 0, 0xdead0000000ull, 0, VRING_DESC_F_NEXT, 1);    /* not RAM, length 0 */
	vrd_set_desc(&t.d, 1, buf, 8, VRING_DESC_F_NEXT, 2);
	vrd_set_desc(&t.d, 2, ~0ull, 0, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 3);
	vrd_set_desc(&t.d, 3, buf + 8, 4, VRING_DESC_F_WRITE, 0);
	vrd_publish(&t.d, 0);
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->out_num, 1);
	assert_int_equal(t.e->in_num, 1);
	assert_int_equal(t.e->out_len, 8);
	assert_int_equal(t.e->in_len, 4);
	expect_seg(&t, 0, buf, 8);
	expect_seg(&t, 1, buf + 8, 4);

	/* A chain of only empty buffers is an element with no segments. */
	vrd_set_desc(&t.d, 4, 0, 0, 0, 0);
	vrd_publish(&t.d, 4);
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->head, 4);
	assert_int_equal(t.e->out_num + t.e->in_num, 0);
	t_exit(&t);
}

/* A full ring (idx exactly size ahead) and a chain using every descriptor are fine. */
static void test_full_ring_and_longest_chain(void **state)
{
	struct t t;
	struct vrd_buf b[8];

	t_init(&t, 8, false, false);
	for (unsigned i = 0; i < 8; i++) {
		b[i] = vrd_buf_data(&t.d, NULL, 4, false);
		vrd_publish(&t.d, vrd_add_chain(&t.d, &b[i], 1));
	}
	for (unsigned i = 0; i < 8; i++) {
		assert_int_equal(vq_pop(&t.vq, t.e), 0);
		assert_int_equal(t.e->head, i);
		expect_seg(&t, 0, b[i].gpa, 4);
	}
	assert_int_equal(vq_pop(&t.vq, t.e), -ENOENT);
	for (unsigned i = 0; i < 8; i++)
		vq_push(&t.vq, (uint16_t)i, 0);

	vrd_publish(&t.d, vrd_add_chain(&t.d, b, 8));
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->out_num, 8);
	assert_int_equal(t.e->out_len, 32);
	t_exit(&t);
}

/* A 1024-entry queue takes a 1024-buffer indirect chain; 1025 buffers are refused. */
static void test_max_segments(void **state)
{
	struct t t;
	struct vrd_buf *b = calloc(VQ_MAX_SEGS + 1, sizeof(*b));

	assert_non_null(b);
	t_init_ram(&t, 1024, 4ull << 20, false, true);
	for (unsigned i = 0; i < VQ_MAX_SEGS + 1; i++)
		b[i] = vrd_buf_data(&t.d, NULL, 8, i >= VQ_MAX_SEGS / 2);

	vrd_publish(&t.d, vrd_add_indirect(&t.d, b, VQ_MAX_SEGS));
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->out_num, VQ_MAX_SEGS / 2);
	assert_int_equal(t.e->in_num, VQ_MAX_SEGS / 2);
	assert_int_equal(t.e->out_len, 8 * VQ_MAX_SEGS / 2);
	for (unsigned i = 0; i < VQ_MAX_SEGS; i++)
		expect_seg(&t, i, b[i].gpa, 8);

	/* One more: all in the table, or one direct buffer before a full table. */
	vrd_publish(&t.d, vrd_add_indirect(&t.d, b, VQ_MAX_SEGS + 1));
	expect_violation(&t, "too many buffers");
	vq_reset(&t.vq);
	assert_int_equal(vq_activate(&t.vq, &t.d.gm, false, true), 0);
	vrd_start_at(&t.d, &t.vq, 0);
	vrd_publish(&t.d, vrd_add(&t.d, b, VQ_MAX_SEGS + 1, VQ_MAX_SEGS));
	expect_violation(&t, "too many buffers");
	t_exit(&t);
	free(b);
}

/*
 * Each direction's total must stay below 4 GiB: 585 and 439 buffers of
 * 7 MiB (the same guest range, over and over) pass, 586 readable ones do not.
 */
static void test_total_length_limit(void **state)
{
	const uint32_t seg = 7u << 20;
	struct t t;
	uint64_t buf, table;

	t_init_ram(&t, 4, 8ull << 20, false, true);
	table = vrd_alloc(&t.d, 16ull * VQ_MAX_SEGS);
	buf = vrd_alloc(&t.d, seg);
	for (unsigned i = 0; i < VQ_MAX_SEGS; i++) {
		bool last = i == VQ_MAX_SEGS - 1;

		vrd_write_desc(&t.d, table, i, buf, seg,
			       (uint16_t)((last ? 0 : VRING_DESC_F_NEXT) | (i >= 585 ? VRING_DESC_F_WRITE : 0)),
			       last ? 0 : (uint16_t)(i + 1));
	}
	vrd_set_desc(&t.d, 0, table, 16u * VQ_MAX_SEGS, VRING_DESC_F_INDIRECT, 0);
	vrd_publish(&t.d, 0);
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->out_num, 585);
	assert_int_equal(t.e->in_num, 439);
	assert_int_equal(t.e->out_len, 585ull * seg);
	assert_int_equal(t.e->in_len, 439ull * seg);

	vrd_write_desc(&t.d, table, 585, buf, seg, VRING_DESC_F_NEXT, 586);
	vrd_publish(&t.d, 0);
	expect_violation(&t, "readable part is 4 GiB");
	t_exit(&t);
}

/* ---- used ring ---- */

static void test_push_used_ring(void **state)
{
	struct t t;
	struct vrd_buf b;
	uint32_t id, len;

	t_init(&t, 4, false, false);
	b = vrd_buf_data(&t.d, NULL, 100, true);
	for (unsigned round = 0; round < 6; round++) {   /* wraps the 4-entry ring */
		uint16_t head = vrd_add_chain(&t.d, &b, 1);

		vrd_publish(&t.d, head);
		assert_int_equal(vq_pop(&t.vq, t.e), 0);
		assert_int_equal(t.e->head, head);
		vq_push(&t.vq, t.e->head, 40 + round);
		assert_int_equal(vrd_used_idx(&t.d), round + 1);
		assert_int_equal(t.vq.used_idx, round + 1);
		assert_true(vrd_get_used(&t.d, &id, &len));
		assert_int_equal(id, head);
		assert_int_equal(len, 40 + round);
		assert_false(vrd_get_used(&t.d, &id, &len));
	}
	/* Out of order completion: entries follow push order. */
	vrd_publish(&t.d, vrd_add_chain(&t.d, &b, 1));
	vrd_publish(&t.d, vrd_add_chain(&t.d, &b, 1));
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	vq_push(&t.vq, 3, 7);
	vq_push(&t.vq, 2, 9);
	assert_true(vrd_get_used(&t.d, &id, &len));
	assert_int_equal(id, 3);
	assert_int_equal(len, 7);
	assert_true(vrd_get_used(&t.d, &id, &len));
	assert_int_equal(id, 2);
	assert_int_equal(len, 9);

	/* A head beyond the queue is a device bug: nothing is written. */
	vq_push(&t.vq, 4, 1);
	vq_push(&t.vq, 0xffff, 1);
	assert_int_equal(vrd_used_idx(&t.d), 8);
	assert_int_equal(t.vq.used_idx, 8);
	t_exit(&t);
}

/* ---- interrupt suppression ---- */

static void test_no_interrupt_flag(void **state)
{
	struct t t;

	t_init(&t, 4, false, false);
	vq_push(&t.vq, 0, 0);
	assert_true(vq_need_notify(&t.vq));
	vrd_set_avail_flags(&t.d, VRING_AVAIL_F_NO_INTERRUPT);
	vq_push(&t.vq, 1, 0);
	assert_false(vq_need_notify(&t.vq));
	vrd_set_avail_flags(&t.d, 0);
	assert_true(vq_need_notify(&t.vq));
	/* used_event means nothing without EVENT_IDX. */
	vrd_set_used_event(&t.d, 100);
	assert_true(vq_need_notify(&t.vq));
	t_exit(&t);

	/* With EVENT_IDX the flag is ignored and used_event decides. */
	t_init(&t, 4, true, false);
	vrd_set_avail_flags(&t.d, VRING_AVAIL_F_NO_INTERRUPT);
	vrd_set_used_event(&t.d, 0);
	vq_push(&t.vq, 0, 0);
	assert_true(vq_need_notify(&t.vq));
	vrd_set_used_event(&t.d, 1);
	vq_push(&t.vq, 1, 0);
	assert_true(vq_need_notify(&t.vq));
	vq_push(&t.vq, 2, 0);
	assert_false(vq_need_notify(&t.vq));
	vrd_set_avail_flags(&t.d, 0);
	vq_push(&t.vq, 3, 0);
	assert_false(vq_need_notify(&t.vq));
	t_exit(&t);
}

static void test_event_idx_decisions(void **state)
{
	struct t t;

	t_init(&t, 8, true, false);
	/* Nothing signalled yet: the first check always notifies. */
	vrd_set_used_event(&t.d, 5);
	vq_push(&t.vq, 0, 0);
	assert_true(vq_need_notify(&t.vq));
	assert_int_equal(t.vq.signalled_used, 1);
	assert_true(t.vq.signalled_used_valid);

	/* used_event 3: notify once the entry at index 3 is written (idx 3 -> 4). */
	vrd_set_used_event(&t.d, 3);
	vq_push(&t.vq, 1, 0);                  /* idx 2 */
	assert_false(vq_need_notify(&t.vq));
	vq_push(&t.vq, 2, 0);                  /* idx 3 */
	assert_false(vq_need_notify(&t.vq));
	vq_push(&t.vq, 3, 0);                  /* idx 4: entry 3 written */
	assert_true(vq_need_notify(&t.vq));
	vq_push(&t.vq, 4, 0);                  /* idx 5: event already passed */
	assert_false(vq_need_notify(&t.vq));

	/* Several pushes per check: notify if the event lies among them. */
	vrd_set_used_event(&t.d, 6);
	vq_push(&t.vq, 5, 0);
	vq_push(&t.vq, 6, 0);
	vq_push(&t.vq, 7, 0);                  /* entries 5, 6, 7 */
	assert_true(vq_need_notify(&t.vq));
	vrd_set_used_event(&t.d, 12);
	vq_push(&t.vq, 0, 0);
	vq_push(&t.vq, 1, 0);                  /* entries 8, 9 */
	assert_false(vq_need_notify(&t.vq));
	/* An event behind what was already checked does not notify again. */
	vrd_set_used_event(&t.d, 9);
	vq_push(&t.vq, 2, 0);                  /* entry 10 */
	assert_false(vq_need_notify(&t.vq));
	assert_int_equal(t.vq.signalled_used, 11);
	t_exit(&t);
}

static void test_event_idx_wrap(void **state)
{
	struct t t;

	t_init(&t, 8, true, false);
	vrd_start_at(&t.d, &t.vq, 0xfffd);
	vrd_set_used_event(&t.d, 0xfffd);
	vq_push(&t.vq, 0, 0);                  /* entry 0xfffd, idx 0xfffe */
	assert_true(vq_need_notify(&t.vq));

	vrd_set_used_event(&t.d, 0xffff);
	vq_push(&t.vq, 1, 0);                  /* entry 0xfffe */
	assert_false(vq_need_notify(&t.vq));
	vq_push(&t.vq, 2, 0);                  /* entry 0xffff, idx wraps to 0 */
	assert_int_equal(t.vq.used_idx, 0);
	assert_int_equal(vrd_used_idx(&t.d), 0);
	assert_true(vq_need_notify(&t.vq));

	vrd_set_used_event(&t.d, 0);
	vq_push(&t.vq, 3, 0);                  /* entry 0 */
	assert_true(vq_need_notify(&t.vq));

	/* A batch across the wrap: entries 0xfffe, 0xffff, 0, 1. */
	vrd_start_at(&t.d, &t.vq, 0xfffe);
	t.vq.signalled_used = 0xfffe;
	for (uint16_t ev = 0xfffa; ev != 6; ev++) {
		bool inside = ev == 0xfffe || ev == 0xffff || ev == 0 || ev == 1;

		t.vq.used_idx = 0xfffe;
		t.vq.signalled_used = 0xfffe;
		vrd_set_used_event(&t.d, ev);
		for (unsigned i = 0; i < 4; i++)
			vq_push(&t.vq, (uint16_t)i, 0);
		assert_int_equal(t.vq.used_idx, 2);
		assert_int_equal(vq_need_notify(&t.vq), inside);
	}
	t_exit(&t);
}

/* ---- kick suppression ---- */

static void test_kick_suppression_flags(void **state)
{
	struct t t;
	struct vrd_buf b;

	t_init(&t, 4, false, false);
	b = vrd_buf_data(&t.d, "x", 1, false);
	vq_disable_kicks(&t.vq);
	assert_int_equal(vrd_used_flags(&t.d), VRING_USED_F_NO_NOTIFY);
	assert_false(vq_enable_kicks(&t.vq));
	assert_int_equal(vrd_used_flags(&t.d), 0);

	/* Work that arrived while kicks were off is reported on re-arming. */
	vq_disable_kicks(&t.vq);
	vrd_publish(&t.d, vrd_add_chain(&t.d, &b, 1));
	assert_true(vq_enable_kicks(&t.vq));
	assert_int_equal(vrd_used_flags(&t.d), 0);
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_false(vq_enable_kicks(&t.vq));
	t_exit(&t);
}

static void test_kick_suppression_event_idx(void **state)
{
	struct t t;
	struct vrd_buf b;

	t_init(&t, 4, true, false);
	b = vrd_buf_data(&t.d, "x", 1, false);
	vrd_start_at(&t.d, &t.vq, 0xfffe);

	/* Flags stay 0 with EVENT_IDX; avail_event tells the driver where to kick. */
	vq_disable_kicks(&t.vq);
	assert_int_equal(vrd_used_flags(&t.d), 0);
	assert_false(vq_enable_kicks(&t.vq));
	assert_int_equal(vrd_avail_event(&t.d), 0xfffe);

	vq_disable_kicks(&t.vq);
	vrd_publish(&t.d, vrd_add_chain(&t.d, &b, 1));
	vrd_publish(&t.d, vrd_add_chain(&t.d, &b, 1));     /* avail idx wraps to 0 */
	assert_true(vq_enable_kicks(&t.vq));
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.vq.last_avail, 0);
	assert_false(vq_enable_kicks(&t.vq));
	assert_int_equal(vrd_avail_event(&t.d), 0);
	assert_int_equal(vrd_used_flags(&t.d), 0);
	t_exit(&t);
}

/* ---- activation ---- */

/* Activation asks for a kick on the first buffer, whatever the driver left in the used ring. */
static void test_activate_arms_kicks(void **state)
{
	struct t t;

	t_init(&t, 8, false, false);
	vrd_w16(&t.d, t.d.used_gpa, VRING_USED_F_NO_NOTIFY);
	vrd_w16(&t.d, t.d.used_gpa + 4 + 8 * 8, 0x1234);
	assert_int_equal(vq_activate(&t.vq, &t.d.gm, false, false), 0);
	assert_int_equal(vrd_used_flags(&t.d), 0);
	assert_int_equal(vrd_avail_event(&t.d), 0x1234);     /* not ours without EVENT_IDX */

	vrd_w16(&t.d, t.d.used_gpa, VRING_USED_F_NO_NOTIFY);
	assert_int_equal(vq_activate(&t.vq, &t.d.gm, true, false), 0);
	assert_int_equal(vrd_used_flags(&t.d), 0);
	assert_int_equal(vrd_avail_event(&t.d), 0);
	t_exit(&t);
}

static void test_activate_checks(void **state)
{
	struct t t;
	struct virtq *vq = &t.vq;
	uint64_t end;

	t_init(&t, 8, false, false);
	end = t.d.ram_gpa + t.d.ram_size;
	assert_non_null(vq->gm);

	/* Each ring may end exactly at the end of RAM, not one byte later. */
	vq->desc_gpa = end - 16 * 8;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), 0);
	vq->desc_gpa = end - 16 * 8 + 16;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	assert_null(vq->gm);
	assert_int_equal(vq_pop(vq, t.e), -ENOENT);
	vq->desc_gpa = t.d.desc_gpa;

	vq->avail_gpa = end - (6 + 2 * 8);
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), 0);
	vq->avail_gpa = end - (6 + 2 * 8) + 2;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->avail_gpa = t.d.avail_gpa;

	vq->used_gpa = end - 72;                    /* 70 bytes, 4-aligned: ends 2 bytes early */
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), 0);
	vq->used_gpa = end - 68;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->used_gpa = t.d.used_gpa;

	/* Below RAM, and overflowing the address space. */
	vq->desc_gpa = t.d.ram_gpa - 16;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->desc_gpa = ~0ull - 15;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->desc_gpa = t.d.desc_gpa;
	vq->used_gpa = ~0ull - 3;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->used_gpa = t.d.used_gpa;
	vq->avail_gpa = 0;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->avail_gpa = t.d.avail_gpa;

	/* Misaligned: 16 for the table, 2 for avail, 4 for used. */
	vq->desc_gpa = t.d.desc_gpa + 8;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->desc_gpa = t.d.desc_gpa;
	vq->avail_gpa = t.d.avail_gpa + 1;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->avail_gpa = t.d.avail_gpa;
	vq->used_gpa = t.d.used_gpa + 2;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->used_gpa = t.d.used_gpa;

	/* Sizes: a power of two in 1..max_size, max_size at most VQ_MAX_SIZE. */
	vq->size = 6;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->size = 0;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->size = 1;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), 0);
	vq->size = 4;
	vq->max_size = 2;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->max_size = 2048;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->max_size = VQ_MAX_SIZE;
	vq->size = 2048;
	assert_int_equal(vq_activate(vq, &t.d.gm, false, false), -EINVAL);
	vq->size = 8;
	assert_int_equal(vq_activate(vq, NULL, false, false), -EINVAL);

	/* A good activation takes the negotiated features and starts at 0. */
	vq->last_avail = 77;
	vq->used_idx = 78;
	assert_int_equal(vq_activate(vq, &t.d.gm, true, true), 0);
	assert_true(vq->event_idx);
	assert_true(vq->indirect);
	assert_int_equal(vq->last_avail, 0);
	assert_int_equal(vq->used_idx, 0);
	assert_false(vq->signalled_used_valid);
	t_exit(&t);
}

/* ---- a hostile driver ---- */

static void test_bad_head(void **state)
{
	struct t t;

	t_init(&t, 8, false, false);
	vrd_set_desc(&t.d, 0, t.d.data_start, 4, 0, 0);
	vrd_publish(&t.d, 8);
	expect_violation(&t, "head beyond");
	t_exit(&t);
}

static void test_bad_next(void **state)
{
	struct t t;

	t_init(&t, 8, false, false);
	vrd_set_desc(&t.d, 0, t.d.data_start, 4, VRING_DESC_F_NEXT, 8);
	vrd_publish(&t.d, 0);
	expect_violation(&t, "next is beyond");
	t_exit(&t);
}

static void test_loop(void **state)
{
	struct t t;

	t_init(&t, 8, false, false);
	vrd_set_desc(&t.d, 2, t.d.data_start, 4, VRING_DESC_F_NEXT, 5);
	vrd_set_desc(&t.d, 5, t.d.data_start, 4, VRING_DESC_F_NEXT, 2);
	vrd_publish(&t.d, 2);
	expect_violation(&t, "loops");
	t_exit(&t);

	/* A descriptor that names itself. */
	t_init(&t, 1, false, false);
	vrd_set_desc(&t.d, 0, t.d.data_start, 4, VRING_DESC_F_NEXT, 0);
	vrd_publish(&t.d, 0);
	expect_violation(&t, "loops");
	t_exit(&t);
}

/* Longer than the table without a cycle is impossible directly; via a zero-length cycle it is caught. */
static void test_chain_longer_than_table(void **state)
{
	struct t t;

	t_init(&t, 4, false, false);
	/* 0 -> 1 -> 2 -> 3 -> 1: five descriptors in a four-entry table. */
	vrd_set_desc(&t.d, 0, t.d.data_start, 0, VRING_DESC_F_NEXT, 1);
	vrd_set_desc(&t.d, 1, t.d.data_start, 0, VRING_DESC_F_NEXT, 2);
	vrd_set_desc(&t.d, 2, t.d.data_start, 0, VRING_DESC_F_NEXT, 3);
	vrd_set_desc(&t.d, 3, t.d.data_start, 0, VRING_DESC_F_NEXT, 1);
	vrd_publish(&t.d, 0);
	expect_violation(&t, "loops");
	t_exit(&t);
}

static void test_indirect_loop_and_bad_next(void **state)
{
	struct t t;
	uint64_t table;

	t_init(&t, 4, false, true);
	table = vrd_alloc(&t.d, 64);
	for (unsigned i = 0; i < 4; i++)
		vrd_write_desc(&t.d, table, i, t.d.data_start, 4, VRING_DESC_F_NEXT, (uint16_t)((i + 1) % 4));
	vrd_set_desc(&t.d, 0, table, 64, VRING_DESC_F_INDIRECT, 0);
	vrd_publish(&t.d, 0);
	expect_violation(&t, "loops");
	t_exit(&t);

	/* next must stay inside the table's len/16 entries, not the queue size. */
	t_init(&t, 16, false, true);
	table = vrd_alloc(&t.d, 64);
	vrd_write_desc(&t.d, table, 0, t.d.data_start, 4, VRING_DESC_F_NEXT, 2);
	vrd_write_desc(&t.d, table, 2, t.d.data_start, 4, 0, 0);
	vrd_set_desc(&t.d, 0, table, 32, VRING_DESC_F_INDIRECT, 0);
	vrd_publish(&t.d, 0);
	expect_violation(&t, "next is beyond");
	t_exit(&t);
}

static void test_indirect_in_indirect(void **state)
{
	struct t t;
	uint64_t outer, inner;

	t_init(&t, 4, false, true);
	inner = vrd_alloc(&t.d, 16);
	outer = vrd_alloc(&t.d, 16);
	vrd_write_desc(&t.d, inner, 0, t.d.data_start, 4, 0, 0);
	vrd_write_desc(&t.d, outer, 0, inner, 16, VRING_DESC_F_INDIRECT, 0);
	vrd_set_desc(&t.d, 0, outer, 16, VRING_DESC_F_INDIRECT, 0);
	vrd_publish(&t.d, 0);
	expect_violation(&t, "inside an indirect");
	t_exit(&t);
}

static void test_indirect_and_next(void **state)
{
	struct t t;
	uint64_t table;

	t_init(&t, 4, false, true);
	table = vrd_alloc(&t.d, 16);
	vrd_write_desc(&t.d, table, 0, t.d.data_start, 4, 0, 0);
	vrd_set_desc(&t.d, 0, table, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	vrd_set_desc(&t.d, 1, t.d.data_start, 4, 0, 0);
	vrd_publish(&t.d, 0);
	expect_violation(&t, "INDIRECT and NEXT");
	t_exit(&t);
}

static void test_indirect_not_negotiated(void **state)
{
	struct t t;
	struct vrd_buf b;

	t_init(&t, 4, true, false);
	b = vrd_buf_data(&t.d, "abc", 3, false);
	vrd_publish(&t.d, vrd_add_indirect(&t.d, &b, 1));
	expect_violation(&t, "without VIRTIO_F_INDIRECT_DESC");
	t_exit(&t);
}

static void bad_indirect_table(uint64_t addr_off, uint64_t addr_abs, uint32_t len, const char *why)
{
	struct t t;
	uint64_t table;

	t_init(&t, 4, false, true);
	table = vrd_alloc(&t.d, 64);
	for (unsigned i = 0; i < 4; i++)
		vrd_write_desc(&t.d, table, i, t.d.data_start, 4, 0, 0);
	vrd_set_desc(&t.d, 0, addr_abs ? addr_abs : table + addr_off, len, VRING_DESC_F_INDIRECT, 0);
	vrd_publish(&t.d, 0);
	expect_violation(&t, why);
	t_exit(&t);
}

static void test_indirect_bad_tables(void **state)
{
	const char *len = "table length", *ram = "table is not in guest RAM";

	bad_indirect_table(0, 0, 0, len);                               /* length 0 */
	bad_indirect_table(0, 0, 24, len);                              /* not a multiple of 16 */
	bad_indirect_table(0, 0, 15, len);
	bad_indirect_table(0, VRD_GPA + VRD_RAM_SIZE - 16, 32, ram);    /* runs off the end of RAM */
	bad_indirect_table(0, VRD_GPA - 16, 16, ram);                   /* before RAM */
	bad_indirect_table(0, ~0ull - 15, 32, ram);                     /* wraps around */
	bad_indirect_table(0, 0xdead00000000ull, 16, ram);              /* nowhere */
}

static void bad_buffer(uint64_t addr, uint32_t len, uint16_t flags)
{
	struct t t;

	t_init(&t, 4, false, true);
	vrd_set_desc(&t.d, 0, addr, len, flags, 0);
	vrd_publish(&t.d, 0);
	expect_violation(&t, "buffer is not in guest RAM");
	t_exit(&t);
}

static void test_bad_buffers(void **state)
{
	bad_buffer(~0ull - 10, 100, 0);                             /* addr + len overflows */
	bad_buffer(~0ull, 2, VRING_DESC_F_WRITE);
	bad_buffer(VRD_GPA + VRD_RAM_SIZE, 1, 0);                   /* just past RAM */
	bad_buffer(VRD_GPA + VRD_RAM_SIZE - 7, 8, VRING_DESC_F_WRITE);
	bad_buffer(VRD_GPA - 1, 1, 0);                              /* just before RAM */
	bad_buffer(VRD_GPA, 0xffffffffu, 0);                        /* longer than RAM */
}

static void test_buffer_at_end_of_ram_ok(void **state)
{
	struct t t;

	t_init(&t, 4, false, false);
	vrd_set_desc(&t.d, 0, VRD_GPA + VRD_RAM_SIZE - 8, 8, VRING_DESC_F_WRITE, 0);
	vrd_publish(&t.d, 0);
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	expect_seg(&t, 0, VRD_GPA + VRD_RAM_SIZE - 8, 8);
	t_exit(&t);
}

static void test_readable_after_writable(void **state)
{
	struct t t;
	struct vrd_buf b[3];

	/* Direct. */
	t_init(&t, 4, false, true);
	b[0] = vrd_buf_data(&t.d, NULL, 8, false);
	b[1] = vrd_buf_data(&t.d, NULL, 8, true);
	b[2] = vrd_buf_data(&t.d, NULL, 8, false);
	vrd_publish(&t.d, vrd_add_chain(&t.d, b, 3));
	expect_violation(&t, "readable buffer after");
	t_exit(&t);

	/* Inside a table. */
	t_init(&t, 4, false, true);
	b[0] = vrd_buf_data(&t.d, NULL, 8, true);
	b[1] = vrd_buf_data(&t.d, NULL, 8, false);
	vrd_publish(&t.d, vrd_add_indirect(&t.d, b, 2));
	expect_violation(&t, "readable buffer after");
	t_exit(&t);

	/* Across the switch from the queue's table to an indirect one. */
	t_init(&t, 4, false, true);
	b[0] = vrd_buf_data(&t.d, NULL, 8, true);
	b[1] = vrd_buf_data(&t.d, NULL, 8, false);
	vrd_publish(&t.d, vrd_add(&t.d, b, 2, 1));
	expect_violation(&t, "readable buffer after");
	t_exit(&t);

	/* Even when the readable one is empty. */
	t_init(&t, 4, false, true);
	b[0] = vrd_buf_data(&t.d, NULL, 8, true);
	b[1] = (struct vrd_buf){ 0, 0, false };
	vrd_publish(&t.d, vrd_add_chain(&t.d, b, 2));
	expect_violation(&t, "readable buffer after");
	t_exit(&t);
}

static void test_avail_idx_runs_ahead(void **state)
{
	struct t t;

	t_init(&t, 8, false, false);
	for (unsigned i = 0; i < 8; i++)
		vrd_set_desc(&t.d, i, t.d.data_start, 4, 0, 0);
	vrd_set_avail_idx(&t.d, 9);
	expect_violation(&t, "ran more than");
	t_exit(&t);

	/* Measured from last_avail, across the wrap; a driver moving idx back counts too. */
	t_init(&t, 8, false, false);
	vrd_start_at(&t.d, &t.vq, 0xfffc);
	vrd_set_avail_idx(&t.d, 0x0004);       /* exactly 8 ahead: fine */
	assert_true(vq_has_work(&t.vq));
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	vrd_set_avail_idx(&t.d, 0xfffc);       /* behind last_avail (0xfffd) */
	expect_violation(&t, "ran more than");
	t_exit(&t);
}

/* A broken queue stays broken, whatever the driver fixes, until vq_reset. */
static void test_broken_sticks_until_reset(void **state)
{
	struct t t;
	struct vrd_buf b;

	t_init(&t, 4, false, false);
	b = vrd_buf_data(&t.d, "ok", 2, false);
	vrd_set_desc(&t.d, 0, t.d.data_start, 4, VRING_DESC_F_NEXT, 9);
	vrd_publish(&t.d, 0);
	expect_violation(&t, "next is beyond");

	vrd_set_desc(&t.d, 0, b.gpa, 2, 0, 0);       /* now valid */
	assert_int_equal(vq_pop(&t.vq, t.e), -EIO);
	assert_true(t.vq.broken);
	assert_false(vq_has_work(&t.vq));

	vq_reset(&t.vq);
	assert_false(t.vq.broken);
	assert_null(t.vq.error);
	assert_int_equal(t.vq.size, 4);              /* the transport's registers stay */
	assert_int_equal(t.vq.desc_gpa, t.d.desc_gpa);
	assert_int_equal(vq_pop(&t.vq, t.e), -ENOENT);   /* not active until activated */
	assert_false(vq_has_work(&t.vq));

	assert_int_equal(vq_activate(&t.vq, &t.d.gm, false, false), 0);
	vrd_start_at(&t.d, &t.vq, 0);
	vrd_publish(&t.d, 0);
	assert_int_equal(vq_pop(&t.vq, t.e), 0);
	assert_int_equal(t.e->out_len, 2);
	t_exit(&t);
}

/* An inactive queue does nothing and writes nothing. */
static void test_inactive_queue(void **state)
{
	struct virtq vq;
	struct vq_elem *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	memset(&vq, 0, sizeof(vq));
	vq.max_size = 8;
	vq.size = 8;
	vq_reset(&vq);
	assert_int_equal(vq_pop(&vq, e), -ENOENT);
	assert_false(vq_has_work(&vq));
	assert_false(vq_need_notify(&vq));
	assert_false(vq_enable_kicks(&vq));
	vq_disable_kicks(&vq);
	vq_push(&vq, 0, 0);
	assert_int_equal(vq.used_idx, 0);
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_buffer),
		cmocka_unit_test(test_chain_out_in_and_copies),
		cmocka_unit_test(test_indirect_table),
		cmocka_unit_test(test_indirect_pointer_write_flag_ignored),
		cmocka_unit_test(test_mixed_direct_and_indirect),
		cmocka_unit_test(test_zero_length_buffers_skipped),
		cmocka_unit_test(test_full_ring_and_longest_chain),
		cmocka_unit_test(test_max_segments),
		cmocka_unit_test(test_total_length_limit),
		cmocka_unit_test(test_push_used_ring),
		cmocka_unit_test(test_no_interrupt_flag),
		cmocka_unit_test(test_event_idx_decisions),
		cmocka_unit_test(test_event_idx_wrap),
		cmocka_unit_test(test_kick_suppression_flags),
		cmocka_unit_test(test_kick_suppression_event_idx),
		cmocka_unit_test(test_activate_arms_kicks),
		cmocka_unit_test(test_activate_checks),
		cmocka_unit_test(test_bad_head),
		cmocka_unit_test(test_bad_next),
		cmocka_unit_test(test_loop),
		cmocka_unit_test(test_chain_longer_than_table),
		cmocka_unit_test(test_indirect_loop_and_bad_next),
		cmocka_unit_test(test_indirect_in_indirect),
		cmocka_unit_test(test_indirect_and_next),
		cmocka_unit_test(test_indirect_not_negotiated),
		cmocka_unit_test(test_indirect_bad_tables),
		cmocka_unit_test(test_bad_buffers),
		cmocka_unit_test(test_buffer_at_end_of_ram_ok),
		cmocka_unit_test(test_readable_after_writable),
		cmocka_unit_test(test_avail_idx_runs_ahead),
		cmocka_unit_test(test_broken_sticks_until_reset),
		cmocka_unit_test(test_inactive_queue),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
