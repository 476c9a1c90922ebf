#include "devices/legacy/i8042.h"
#include "snapshot/snap.h"

#include <errno.h>
#include <string.h>

#define ST_OBF      0x01   /* output buffer full */
#define ST_SYS      0x04   /* system flag: POST passed */
#define ST_CMD      0x08   /* last write was to the command port */
#define ST_UNLOCKED 0x10   /* keyboard not inhibited by the keylock */

#define CB_KBD_INT  0x01   /* command byte: keyboard interrupt enable */

#define CMD_READ_CB       0x20
#define CMD_WRITE_CB      0x60
#define CMD_DISABLE_AUX   0xa7
#define CMD_ENABLE_AUX    0xa8
#define CMD_TEST_AUX      0xa9
#define CMD_SELF_TEST     0xaa
#define CMD_TEST_KBD      0xab
#define CMD_DISABLE_KBD   0xad
#define CMD_ENABLE_KBD    0xae
#define CMD_READ_OUTPORT  0xd0
#define CMD_WRITE_OUTPORT 0xd1
#define CMD_WRITE_KBD_OUT 0xd2
#define CMD_WRITE_AUX_OUT 0xd3
#define CMD_WRITE_AUX     0xd4
#define CMD_PULSE_RESET   0xfe

#define KBD_ACK     0xfa
#define KBD_BAT_OK  0xaa

void i8042_init(struct i8042 *k, const struct sysevent_sink *sink, struct irq *kbd_irq)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->status = ST_SYS | ST_UNLOCKED;
	k->cmd_byte = 0x45; /* kbd irq on, sys flag, translation */
	k->irq = kbd_irq;
	if (sink)
		k->sink = *sink;
}

void i8042_exit(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

static void i8042_update_obf(struct i8042 *k)
{
	if (k->q_len)
		k->status |= ST_OBF;
	else
		k->status &= (uint8_t)~ST_OBF;
}

/* An edge on IRQ 1 whenever a keyboard byte reaches the output buffer. */
static void i8042_kick_irq(struct i8042 *k)
{
	if (k->q_len && k->queue_kbd[k->q_head] && (k->cmd_byte & CB_KBD_INT))
		irq_pulse(k->irq);
}

static void i8042_push(struct i8042 *k, uint8_t v, bool from_kbd)
{
	unsigned i;

	if (k->q_len == I8042_QUEUE) {
		k->dropped++;
		return;
	}
	i = (k->q_head + k->q_len) % I8042_QUEUE;
	k->queue[i] = v;
	k->queue_kbd[i] = from_kbd;
	k->q_len++;
	i8042_update_obf(k);
	if (k->q_len == 1)
		i8042_kick_irq(k);
}

static uint8_t i8042_pop(struct i8042 *k)
{
	uint8_t v;

	if (!k->q_len)
		return 0;
	v = k->queue[k->q_head];
	k->q_head = (k->q_head + 1) % I8042_QUEUE;
	k->q_len--;
	i8042_update_obf(k);
	i8042_kick_irq(k);
	return v;
}

/* Returns true when the guest asked for a CPU reset. */
static bool i8042_command(struct i8042 *k, uint8_t cmd)
{
	k->status |= ST_CMD;
	switch (cmd) {
	case CMD_READ_CB:
		i8042_push(k, k->cmd_byte, false);
		break;
	case CMD_WRITE_CB:
	case CMD_WRITE_OUTPORT:
	case CMD_WRITE_KBD_OUT:
	case CMD_WRITE_AUX_OUT:
	case CMD_WRITE_AUX:
		k->pending_cmd = cmd;
		break;
	case CMD_SELF_TEST:
		i8042_push(k, 0x55, false);
		break;
	case CMD_TEST_KBD:
		i8042_push(k, 0x00, false);
		break;
	case CMD_TEST_AUX:
		i8042_push(k, 0x01, false);   /* clock line stuck low: no mouse */
		break;
	case CMD_READ_OUTPORT:
		i8042_push(k, 0x01, false);   /* reset line deasserted */
		break;
	case CMD_DISABLE_KBD:
		k->cmd_byte |= 0x10;
		break;
	case CMD_ENABLE_KBD:
		k->cmd_byte &= (uint8_t)~0x10;
		break;
	case CMD_DISABLE_AUX:
		k->cmd_byte |= 0x20;
		break;
	case CMD_ENABLE_AUX:
		k->cmd_byte &= (uint8_t)~0x20;
		break;
	case CMD_PULSE_RESET:
		return true;
	default:
		/* 0xf0-0xff pulse output lines; bit 0 is the reset line. */
		if (cmd >= 0xf0 && !(cmd & 1))
			return true;
		break;
	}
	return false;
}

/* A byte for the keyboard itself: answer like a PS/2 keyboard in set 2. */
static void i8042_kbd_command(struct i8042 *k, uint8_t v)
{
	if (k->kbd_pending) {
		/* The argument of LEDs / typematic / scancode-set commands. */
		uint8_t cmd = k->kbd_pending;

		k->kbd_pending = 0;
		i8042_push(k, KBD_ACK, true);
		if (cmd == 0xf0 && v == 0)
			i8042_push(k, 0x02, true);
		return;
	}
	switch (v) {
	case 0xff:                    /* reset and self test */
		i8042_push(k, KBD_ACK, true);
		i8042_push(k, KBD_BAT_OK, true);
		break;
	case 0xf2:                    /* identify: MF2 keyboard */
		i8042_push(k, KBD_ACK, true);
		i8042_push(k, 0xab, true);
		i8042_push(k, 0x83, true);
		break;
	case 0xee:                    /* echo */
		i8042_push(k, 0xee, true);
		break;
	case 0xed: case 0xf0: case 0xf3:
		k->kbd_pending = v;
		i8042_push(k, KBD_ACK, true);
		break;
	default:
		i8042_push(k, KBD_ACK, true);
		break;
	}
}

static bool i8042_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending_cmd;

	k->status &= (uint8_t)~ST_CMD;
	k->pending_cmd = 0;
	switch (cmd) {
	case CMD_WRITE_CB:
		k->cmd_byte = v;
		i8042_kick_irq(k);
		break;
	case CMD_WRITE_OUTPORT:
		return !(v & 1);          /* output port bit 0 low resets the CPU */
	case CMD_WRITE_KBD_OUT:
		i8042_push(k, v, true);
		break;
	case CMD_WRITE_AUX_OUT:
	case CMD_WRITE_AUX:
		break;                    /* there is no mouse behind the AUX port */
	default:
		i8042_kbd_command(k, v);
		break;
	}
	return false;
}

size_t i8042_kbd_input(struct i8042 *k, const uint8_t *codes, size_t n)
{
	size_t i;

	pthread_mutex_lock(&k->lock);
	for (i = 0; i < n && k->q_len < I8042_QUEUE; i++)
		i8042_push(k, codes[i], true);
	pthread_mutex_unlock(&k->lock);
	return i;
}

static uint64_t i8042_access_read(struct i8042 *k, bool data)
{
	uint8_t v;

	pthread_mutex_lock(&k->lock);
	v = data ? i8042_pop(k) : k->status;
	pthread_mutex_unlock(&k->lock);
	return v;
}

static void i8042_access_write(struct i8042 *k, bool data, uint8_t value)
{
	bool reset;

	pthread_mutex_lock(&k->lock);
	reset = data ? i8042_data(k, value) : i8042_command(k, value);
	if (reset)
		k->resets++;
	pthread_mutex_unlock(&k->lock);
	if (reset)
		sysevent_fire(&k->sink, SYSEVENT_RESET, 0);
}

static uint64_t i8042_data_read(void *opaque, uint64_t off, unsigned size)
{
	return i8042_access_read(opaque, true);
}

static void i8042_data_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	i8042_access_write(opaque, true, (uint8_t)value);
}

static uint64_t i8042_ctl_read(void *opaque, uint64_t off, unsigned size)
{
	return i8042_access_read(opaque, false);
}

static void i8042_ctl_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	i8042_access_write(opaque, false, (uint8_t)value);
}

const struct bus_dev_ops i8042_data_ops = { .read = i8042_data_read, .write = i8042_data_write };
const struct bus_dev_ops i8042_ctl_ops = { .read = i8042_ctl_read, .write = i8042_ctl_write };

/* ---- snapshot ---- */

void i8042_save(const struct i8042 *k, struct snap_writer *w)
{
	pthread_mutex_t *lock = (pthread_mutex_t *)&k->lock;

	pthread_mutex_lock(lock);
	snap_put_u8(w, k->status);
	snap_put_u8(w, k->cmd_byte);
	snap_put_u8(w, k->pending_cmd);
	snap_put_u8(w, k->kbd_pending);
	snap_put_u8(w, (uint8_t)k->q_head);
	snap_put_u8(w, (uint8_t)k->q_len);
	snap_put(w, k->queue, sizeof(k->queue));
	for (unsigned i = 0; i < I8042_QUEUE; i++)
		snap_put_bool(w, k->queue_kbd[i]);
	pthread_mutex_unlock(lock);
}

static int i8042_refuse(struct snap_sec *s, const char *why, unsigned v)
{
	log_err("snapshot", "i8042: %s (%u)", why, v);
	snap_sec_fail(s);
	return -EINVAL;
}

int i8042_load(struct i8042 *k, struct snap_sec *s)
{
	uint8_t status, cmd_byte, pending_cmd, kbd_pending, queue[I8042_QUEUE];
	bool queue_kbd[I8042_QUEUE];
	unsigned q_head, q_len;

	if (s->version != I8042_SNAP_VERSION)
		return i8042_refuse(s, "unknown section version", s->version);
	status = snap_get_u8(s);
	cmd_byte = snap_get_u8(s);
	pending_cmd = snap_get_u8(s);
	kbd_pending = snap_get_u8(s);
	q_head = snap_get_u8(s);
	q_len = snap_get_u8(s);
	snap_get(s, queue, sizeof(queue));
	for (unsigned i = 0; i < I8042_QUEUE; i++)
		queue_kbd[i] = snap_get_bool(s);
	if (s->err)
		return i8042_refuse(s, "section truncated or malformed", (unsigned)s->len);
	if (q_head >= I8042_QUEUE)
		return i8042_refuse(s, "output queue head out of range", q_head);
	if (q_len > I8042_QUEUE)
		return i8042_refuse(s, "output queue length exceeds the queue", q_len);
	if (!!(status & ST_OBF) != (q_len != 0))
		return i8042_refuse(s, "status OBF disagrees with the output queue", status);

	pthread_mutex_lock(&k->lock);
	k->status = status;
	k->cmd_byte = cmd_byte;
	k->pending_cmd = pending_cmd;
	k->kbd_pending = kbd_pending;
	k->q_head = q_head;
	k->q_len = q_len;
	memcpy(k->queue, queue, sizeof(queue));
	memcpy(k->queue_kbd, queue_kbd, sizeof(queue_kbd));
	pthread_mutex_unlock(&k->lock);
	return 0;
}
