#include "devices/legacy/i8042.h"

#include <string.h>

#define ST_OBF   0x01   /* output buffer full */
#define ST_SYS   0x04   /* system flag: POST passed */
#define ST_CMD   0x08   /* last write was to the command port */

#define CMD_READ_CB      0x20
#define CMD_WRITE_CB     0x60
#define CMD_DISABLE_AUX  0xa7
#define CMD_ENABLE_AUX   0xa8
#define CMD_TEST_AUX     0xa9
#define CMD_SELF_TEST    0xaa
#define CMD_TEST_KBD     0xab
#define CMD_DISABLE_KBD  0xad
#define CMD_ENABLE_KBD   0xae
#define CMD_READ_OUTPORT 0xd0
#define CMD_WRITE_OUTPORT 0xd1
#define CMD_PULSE_RESET  0xfe

#define PORT_DATA   0
#define PORT_STATUS 4

void i8042_init(struct i8042 *k, const struct sysevent_sink *sink)
{
	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->status = ST_SYS;
	k->cmd_byte = 0x45; /* kbd irq on, sys flag, translation */
	if (sink)
		k->sink = *sink;
}

static void i8042_put(struct i8042 *k, uint8_t v)
{
	k->outbuf = v;
	k->status |= ST_OBF;
}

/* Returns true when the guest asked for a CPU reset. */
static bool i8042_command(struct i8042 *k, uint8_t cmd)
{
	k->status |= ST_CMD;
	switch (cmd) {
	case CMD_READ_CB:
		i8042_put(k, k->cmd_byte);
		break;
	case CMD_WRITE_CB:
	case CMD_WRITE_OUTPORT:
		k->pending_cmd = cmd;
		break;
	case CMD_SELF_TEST:
		i8042_put(k, 0x55);
		break;
	case CMD_TEST_KBD:
	case CMD_TEST_AUX:
		i8042_put(k, 0x00);
		break;
	case CMD_READ_OUTPORT:
		i8042_put(k, 0x01); /* reset line deasserted, A20 off */
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

static bool i8042_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending_cmd;

	k->status &= (uint8_t)~ST_CMD;
	k->pending_cmd = 0;
	if (cmd == CMD_WRITE_CB)
		k->cmd_byte = v;
	else if (cmd == CMD_WRITE_OUTPORT && !(v & 1))
		return true; /* output port bit 0 low resets the CPU */
	/* Bytes for a keyboard that is not there are dropped. */
	return false;
}

static uint64_t i8042_access_read(struct i8042 *k, unsigned port)
{
	uint8_t v;

	pthread_mutex_lock(&k->lock);
	if (port == PORT_DATA) {
		v = k->outbuf;
		k->status &= (uint8_t)~ST_OBF;
	} else {
		v = k->status;
	}
	pthread_mutex_unlock(&k->lock);
	return v;
}

static void i8042_access_write(struct i8042 *k, unsigned port, uint8_t value)
{
	bool reset;

	pthread_mutex_lock(&k->lock);
	reset = port == PORT_STATUS ? i8042_command(k, value) : i8042_data(k, value);
	if (reset)
		k->resets++;
	pthread_mutex_unlock(&k->lock);
	if (reset)
		sysevent_fire(&k->sink, SYSEVENT_RESET, 0);
}

static uint64_t i8042_data_read(void *opaque, uint64_t off, unsigned size)
{
	return i8042_access_read(opaque, PORT_DATA);
}

static void i8042_data_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	i8042_access_write(opaque, PORT_DATA, (uint8_t)value);
}

static uint64_t i8042_ctl_read(void *opaque, uint64_t off, unsigned size)
{
	return i8042_access_read(opaque, PORT_STATUS);
}

static void i8042_ctl_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	i8042_access_write(opaque, PORT_STATUS, (uint8_t)value);
}

const struct bus_dev_ops i8042_data_ops = { .read = i8042_data_read, .write = i8042_data_write };
const struct bus_dev_ops i8042_ctl_ops = { .read = i8042_ctl_read, .write = i8042_ctl_write };
