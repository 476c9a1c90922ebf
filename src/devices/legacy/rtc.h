#ifndef KESTREL_RTC_H
#define KESTREL_RTC_H

#include "util/compiler.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "bus/bus.h"

#define RTC_CMOS_SIZE 128
#define RTC_SNAP_VERSION 1

struct snap_writer;
struct snap_sec;

/*
 * MC146818 CMOS RTC at 0x70 (index, bit 7 = NMI mask) and 0x71 (data).
 * Time comes from the host clock plus an offset the guest may set.
 */
struct rtc {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t cmos[RTC_CMOS_SIZE];
	int64_t offset;                 /* guest time - host time, seconds */
	time_t (*now)(void);            /* injectable for tests; NULL: time() */
};

void rtc_init(struct rtc *r, uint64_t ram_size);
void rtc_exit(struct rtc *r);
extern const struct bus_dev_ops rtc_ops;

/*
 * Snapshot: the index register, the CMOS RAM (control registers A-D
 * included) and the guest's offset from host time. The time registers are
 * not state: they are computed from the host clock on every read, so a
 * restored guest sees the wall-clock time of the restore (plus whatever
 * offset it had set), not the time of the snapshot, like a real RTC that
 * kept ticking on its battery. 0 or -EINVAL, the device untouched then.
 */
void rtc_save(const struct rtc *r, struct snap_writer *w);
KESTREL_MUST_CHECK int rtc_load(struct rtc *r, struct snap_sec *s);

#endif
