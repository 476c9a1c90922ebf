#include "devices/legacy/rtc.h"
#include "snapshot/snap.h"

#include <errno.h>
#include <string.h>

#define REG_SEC     0x00
#define REG_MIN     0x02
#define REG_HOUR    0x04
#define REG_WDAY    0x06
#define REG_MDAY    0x07
#define REG_MON     0x08
#define REG_YEAR    0x09
#define REG_A       0x0a
#define REG_B       0x0b
#define REG_C       0x0c
#define REG_D       0x0d
#define REG_CENTURY 0x32

#define B_24H   0x02
#define B_DM    0x04   /* binary, not BCD */
#define B_SET   0x80   /* updates inhibited while the guest sets the time */
#define D_VRT   0x80   /* valid RAM and time */

static time_t rtc_now(const struct rtc *r)
{
	return (r->now ? r->now() : time(NULL)) + (time_t)r->offset;
}

void rtc_init(struct rtc *r, uint64_t ram_size)
{
	uint64_t ext;

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->cmos[REG_A] = 0x26;          /* 32.768 kHz time base, 1024 Hz rate */
	r->cmos[REG_B] = B_24H;
	r->cmos[REG_D] = D_VRT;
	/* Memory size where PC firmware leaves it: 64 KiB units above 16 MiB (0x34/0x35). */
	ext = ram_size > (16ull << 20) ? (ram_size - (16ull << 20)) >> 16 : 0;
	if (ext > 0xffff)
		ext = 0xffff;
	r->cmos[0x34] = (uint8_t)ext;
	r->cmos[0x35] = (uint8_t)(ext >> 8);
}

void rtc_exit(struct rtc *r)
{
	pthread_mutex_destroy(&r->lock);
}

static uint8_t to_bcd(unsigned v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

static unsigned from_bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 0xf);
}

static uint8_t rtc_enc(const struct rtc *r, unsigned v)
{
	return (r->cmos[REG_B] & B_DM) ? (uint8_t)v : to_bcd(v);
}

static unsigned rtc_dec(const struct rtc *r, uint8_t v)
{
	return (r->cmos[REG_B] & B_DM) ? v : from_bcd(v);
}

static uint8_t rtc_encode_hour(const struct rtc *r, unsigned hour)
{
	unsigned h12;

	if (r->cmos[REG_B] & B_24H)
		return rtc_enc(r, hour);
	h12 = hour % 12 ? hour % 12 : 12;
	return (uint8_t)(rtc_enc(r, h12) | (hour >= 12 ? 0x80 : 0));
}

static uint8_t rtc_time_reg(const struct rtc *r, unsigned reg)
{
	time_t t = rtc_now(r);
	struct tm tm;

	gmtime_r(&t, &tm);
	switch (reg) {
	case REG_SEC: return rtc_enc(r, (unsigned)tm.tm_sec);
	case REG_MIN: return rtc_enc(r, (unsigned)tm.tm_min);
	case REG_HOUR: return rtc_encode_hour(r, (unsigned)tm.tm_hour);
	case REG_WDAY: return rtc_enc(r, (unsigned)tm.tm_wday + 1);
	case REG_MDAY: return rtc_enc(r, (unsigned)tm.tm_mday);
	case REG_MON: return rtc_enc(r, (unsigned)tm.tm_mon + 1);
	case REG_YEAR: return rtc_enc(r, (unsigned)(tm.tm_year + 1900) % 100);
	case REG_CENTURY: return rtc_enc(r, (unsigned)(tm.tm_year + 1900) / 100);
	}
	return 0;
}

static bool rtc_is_time_reg(unsigned reg)
{
	return reg <= REG_YEAR || reg == REG_CENTURY;
}

/* The guest set a time field: fold the new value into the offset. */
static void rtc_set_time_reg(struct rtc *r, unsigned reg, uint8_t v)
{
	time_t t = rtc_now(r);
	struct tm tm;
	time_t nt;

	gmtime_r(&t, &tm);
	switch (reg) {
	case REG_SEC: tm.tm_sec = (int)rtc_dec(r, v); break;
	case REG_MIN: tm.tm_min = (int)rtc_dec(r, v); break;
	case REG_HOUR:
		if (r->cmos[REG_B] & B_24H)
			tm.tm_hour = (int)rtc_dec(r, v);
		else
			tm.tm_hour = (int)(rtc_dec(r, v & 0x7f) % 12) + ((v & 0x80) ? 12 : 0);
		break;
	case REG_WDAY: return; /* derived from the date */
	case REG_MDAY: tm.tm_mday = (int)rtc_dec(r, v); break;
	case REG_MON: tm.tm_mon = (int)rtc_dec(r, v) - 1; break;
	case REG_YEAR: tm.tm_year = (tm.tm_year + 1900) / 100 * 100 + (int)rtc_dec(r, v) - 1900; break;
	case REG_CENTURY: tm.tm_year = (int)rtc_dec(r, v) * 100 + (tm.tm_year + 1900) % 100 - 1900; break;
	}
	nt = timegm(&tm);
	if (nt != (time_t)-1)
		r->offset += (int64_t)(nt - t);
}

static uint64_t rtc_read(void *opaque, uint64_t off, unsigned size)
{
	struct rtc *r = opaque;
	uint8_t v;

	if (off == 0)
		return 0xff; /* the index port is write-only */
	pthread_mutex_lock(&r->lock);
	if (rtc_is_time_reg(r->index)) {
		v = rtc_time_reg(r, r->index);
	} else if (r->index == REG_C) {
		v = r->cmos[REG_C];
		r->cmos[REG_C] = 0; /* flags clear on read */
	} else {
		v = r->cmos[r->index];
	}
	pthread_mutex_unlock(&r->lock);
	return v;
}

static void rtc_write(void *opaque, uint64_t off, uint64_t value, unsigned size)
{
	struct rtc *r = opaque;
	uint8_t v = (uint8_t)value;

	pthread_mutex_lock(&r->lock);
	if (off == 0) {
		r->index = v & 0x7f;
	} else if (rtc_is_time_reg(r->index)) {
		rtc_set_time_reg(r, r->index, v);
	} else if (r->index == REG_A) {
		r->cmos[REG_A] = v & 0x7f;  /* UIP is read-only */
	} else if (r->index == REG_B) {
		r->cmos[REG_B] = v;
	} else if (r->index != REG_C && r->index != REG_D) {
		r->cmos[r->index] = v;
	}
	pthread_mutex_unlock(&r->lock);
}

const struct bus_dev_ops rtc_ops = { .read = rtc_read, .write = rtc_write };

/* ---- snapshot ---- */

void rtc_save(const struct rtc *r, struct snap_writer *w)
{
	pthread_mutex_t *lock = (pthread_mutex_t *)&r->lock;

	pthread_mutex_lock(lock);
	snap_put_u8(w, r->index);
	snap_put(w, r->cmos, sizeof(r->cmos));
	snap_put_u64(w, (uint64_t)r->offset);
	pthread_mutex_unlock(lock);
}

static int rtc_refuse(struct snap_sec *s, const char *why, unsigned v)
{
	log_err("snapshot", "rtc: %s (%u)", why, v);
	snap_sec_fail(s);
	return -EINVAL;
}

/*
 * About 300,000 years either way: beyond anything a guest can set (BCD
 * garbage decodes to at most century 165), far from overflowing time_t.
 */
#define RTC_MAX_OFFSET (10000000000000ll)

int rtc_load(struct rtc *r, struct snap_sec *s)
{
	uint8_t index, cmos[RTC_CMOS_SIZE];
	int64_t offset;

	if (s->version != RTC_SNAP_VERSION)
		return rtc_refuse(s, "unknown section version", s->version);
	index = snap_get_u8(s);
	snap_get(s, cmos, sizeof(cmos));
	offset = (int64_t)snap_get_u64(s);
	if (s->err)
		return rtc_refuse(s, "section truncated or malformed", (unsigned)s->len);
	if (index >= RTC_CMOS_SIZE)
		return rtc_refuse(s, "register index out of range", index);
	if (offset > RTC_MAX_OFFSET || offset < -RTC_MAX_OFFSET) {
		log_err("snapshot", "rtc: time offset %lld s is out of range", (long long)offset);
		snap_sec_fail(s);
		return -EINVAL;
	}

	pthread_mutex_lock(&r->lock);
	r->index = index;
	memcpy(r->cmos, cmos, sizeof(cmos));
	r->offset = offset;
	pthread_mutex_unlock(&r->lock);
	return 0;
}
