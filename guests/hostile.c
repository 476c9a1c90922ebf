#include "lib/cpu.h"
int guest_main(const struct hvm_start_info *si) { (void)si; return 0; }
