#ifndef KESTREL_RTC_H
#define KESTREL_RTC_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "bus/bus.h"

#define RTC_CMOS_SIZE 128

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
extern const struct bus_dev_ops rtc_ops;

#endif
