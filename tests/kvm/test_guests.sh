#!/usr/bin/env bash
# KVM tests: kestrel on this machine's /dev/kvm with the freestanding test
# guests (guests/), plus the user-input error paths of `kestrel run`.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/lib/checks.sh"

BUILD=${BUILD:-$root/build}
KESTREL=${KESTREL:-$BUILD/kestrel}
KESTREL_ASAN=${KESTREL_ASAN:-}
G=$BUILD/guests
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# run NAME ARGS... : runs kestrel with a time limit; sets rc, out, err files.
run() {
	local name=$1; shift
	out=$T/$name.out
	err=$T/$name.err
	timeout -k 5 "${RUN_TIMEOUT:-60}" "$KESTREL" run "$@" >"$out" 2>"$err" </dev/null
	rc=$?
}

expect_rc() { # NAME WANT
	if [ "$rc" = "$2" ]; then pass "$1"; else fail "$1" "exit status $rc, want $2"; show_tail "$err"; show_tail "$out"; fi
}

expect_out() { # NAME FILE PATTERN
	if grep -q -- "$3" "$2"; then pass "$1"; else fail "$1" "'$3' not in output"; show_tail "$2"; fi
}

# --- errors that need no /dev/kvm ------------------------------------------
expect_usage() { # NAME ARGS...
	local name=$1; shift
	run "$name" "$@"
	if [ "$rc" = 2 ] && [ "$(wc -l <"$err")" = 1 ]; then pass "$name"
	else fail "$name" "want status 2 and one line on stderr, got $rc: $(head -c 300 "$err")"; fi
}
expect_usage usage-no-kernel --cpus 1
expect_usage usage-cpus-zero --kernel /dev/null --cpus 0
expect_usage usage-cpus-too-many --kernel /dev/null --cpus 33
expect_usage usage-memory-too-small --kernel /dev/null --memory 1M
expect_usage usage-memory-garbage --kernel /dev/null --memory lots
expect_usage usage-unknown-option --kernel /dev/null --frobnicate

"$KESTREL" --help >"$T/help" 2>&1
check help-lists-options grep -q -- "--kernel PATH" "$T/help"
"$KESTREL" --version >"$T/version" 2>&1
check version grep -q "^kestrel [0-9]" "$T/version"

if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm -a -w /dev/kvm ]; then
	skip kvm-guests "/dev/kvm is not available on this machine"
	exit 0
fi

# Bad kernels and initrds: one line on stderr, status 1, nothing left behind.
expect_error() { # NAME PATTERN ARGS...
	local name=$1 pat=$2; shift 2
	local before after
	before=$(ls -A "$T" | wc -l)
	run "$name" "$@"
	if [ "$rc" = 1 ] && [ "$(wc -l <"$err")" = 1 ] && grep -qi -- "$pat" "$err"; then pass "$name"
	else fail "$name" "want status 1 and one line matching '$pat', got $rc: $(head -c 300 "$err")"; fi
}
head -c 3000 /dev/urandom >"$T/garbage.bin"
head -c 100 "$G/guest-hello.elf" >"$T/truncated.elf"
: >"$T/empty.bin"
expect_error bad-kernel-missing "no such file" --kernel "$T/does-not-exist"
expect_error bad-kernel-directory "directory" --kernel "$T"
expect_error bad-kernel-garbage "kernel" --kernel "$T/garbage.bin"
expect_error bad-kernel-truncated "kernel" --kernel "$T/truncated.elf"
expect_error bad-kernel-empty "kernel" --kernel "$T/empty.bin"
truncate -s 300M "$T/big.initrd"
expect_error bad-initrd-too-big "initrd" --kernel "$G/guest-hello.elf" --initrd "$T/big.initrd" --memory 64M
rm -f "$T/big.initrd"
expect_error bad-initrd-missing "initrd" --kernel "$G/guest-hello.elf" --initrd "$T/nope"
expect_error bad-console "console" --kernel "$G/guest-hello.elf" --console "bogus"

# --- the test guests ---------------------------------------------------------
run hello --kernel "$G/guest-hello.elf" --cmdline "exit=0 greeting"
expect_rc hello-exit-status "0"
expect_out hello-prints "$out" "kestrel-guest: hello"
expect_out hello-sees-cmdline "$out" "greeting"

# Teardown closes only what kestrel opened (it once closed fd 0 for every vCPU slot it never used).
if command -v strace >/dev/null; then
	strace -f -e trace=close -o "$T/strace" "$KESTREL" run --kernel "$G/guest-hello.elf" --console none \
		--cmdline exit=0 </dev/null >/dev/null 2>&1
	if grep -q "EBADF" "$T/strace" || grep -q "close(0)" "$T/strace"; then
		fail teardown-closes-only-own-fds "$(grep -e EBADF -e 'close(0)' "$T/strace" | head -3)"
	else
		pass teardown-closes-only-own-fds
	fi
else
	skip teardown-closes-only-own-fds "strace not installed"
fi

run hello-status --kernel "$G/guest-hello.elf" --cmdline "exit=7"
expect_rc debug-exit-status-7 "7"

run hello-reset --kernel "$G/guest-hello.elf" --cmdline "exit=reset"
expect_rc i8042-reset-exits-0 "0"

run hello-file --kernel "$G/guest-hello.elf" --console "file:$T/console.txt" --cmdline "exit=0"
expect_rc console-file-status "0"
expect_out console-file-content "$T/console.txt" "kestrel-guest: hello"

# A triple fault is a reset (Linux's reboot=t): status 0, a line saying so and the
# registers (it is also how a broken guest dies).
run triple --kernel "$G/guest-hello.elf" --cmdline "mode=triplefault"
expect_rc triple-fault-status "0"
expect_out triple-fault-message "$err" "triple fault.*reset"
expect_out triple-fault-regdump "$err" "rip="

# Every reset path Linux tries ends the VM with status 0 (guest-reset ends with 99 if the reset was missed):
# the FADT reset register, the i8042 pulse, PCI 0xCF9, a triple fault, and the real-mode
# reset vector F000:FFF0 (Linux's default on HW-reduced ACPI without EFI ends there).
for via in acpi kbd cf9 triple vector; do
	run "reset-$via" --kernel "$G/guest-reset.elf" --cmdline "via=$via"
	expect_rc "reset-$via-exits-0" "0"
	expect_out "reset-$via-ran" "$out" "kestrel-guest: reset via $via"
done
run reset-acpi-fadt --kernel "$G/guest-reset.elf" --cmdline "via=acpi"
expect_out reset-acpi-uses-fadt-register "$out" "ACPI reset: 0x6 to port 0xcf9"
run reset-missed --kernel "$G/guest-reset.elf" --cmdline "via=none"
expect_rc reset-guest-reports-a-missed-reset "99"

# A halted guest keeps the VMM alive until a signal ends it (128+15).
timeout -s TERM 3 "$KESTREL" run --kernel "$G/guest-hello.elf" --cmdline "mode=hlt" >"$T/hlt.out" 2>"$T/hlt.err" </dev/null
rc=$?
if [ "$rc" = 143 ] || [ "$rc" = 124 ]; then
	# timeout(1) reports 124 when it had to send the signal; kestrel's own status is 143.
	pass hlt-guest-runs-until-signal
else
	fail hlt-guest-runs-until-signal "exit status $rc"; show_tail "$T/hlt.err"
fi

run smp --kernel "$G/guest-smp.elf" --cpus 4
expect_rc smp-4-status "0"
expect_out smp-4-all-up "$out" "smp 4/4"

run smp1 --kernel "$G/guest-smp.elf" --cpus 1
expect_rc smp-1-status "0"
expect_out smp-1-madt "$out" "smp 1/1"

run cpl3 --kernel "$G/guest-cpl3.elf" --cmdline "n=2000" --stats
expect_rc cpl3-status "0"
expect_out cpl3-done "$out" "cpl3 done n=2000"
# --stats: the UART scratch register took the PIO loop, the unmapped MMIO the other.
uart_writes=$(awk '$1=="pio" && $2=="uart-com1" {print $5}' "$err")
if [ -n "$uart_writes" ] && [ "$uart_writes" -ge 2000 ]; then pass cpl3-stats-uart-writes
else fail cpl3-stats-uart-writes "uart writes '$uart_writes' < 2000"; show_tail "$err" 30; fi
mmio_exits=$(awk '$1=="mmio" {print $NF}' "$err" | head -1)
if [ -n "$mmio_exits" ] && [ "$mmio_exits" -ge 2000 ]; then pass cpl3-stats-mmio-exits
else fail cpl3-stats-mmio-exits "mmio exits '$mmio_exits' < 2000"; show_tail "$err" 30; fi

# --metrics: JSON lines, periodic and at exit, with the same counters --stats shows.
timeout -s TERM 3 "$KESTREL" run --kernel "$G/guest-hello.elf" --console none --cmdline "mode=hlt" \
	--metrics "$T/hlt.metrics" --metrics-interval 1 </dev/null >/dev/null 2>&1
run metrics --kernel "$G/guest-cpl3.elf" --console none --cmdline "n=2000" --rng --metrics "$T/cpl3.metrics"
if python3 - "$T/hlt.metrics" "$T/cpl3.metrics" <<'PY'
import json, sys
hlt = [json.loads(l) for l in open(sys.argv[1])]
cpl3 = [json.loads(l) for l in open(sys.argv[2])]
assert len(hlt) >= 3, f"{len(hlt)} lines in 3 s at 1 s intervals"
assert all(b["utc_timestamp_ms"] > a["utc_timestamp_ms"] for a, b in zip(hlt, hlt[1:]))
last = cpl3[-1]
assert last["vcpus"][0]["exits"]["mmio"] >= 2000, last["vcpus"][0]
assert last["devices"]["uart-com1@0x3f8"]["writes"] >= 2000
assert last["virtio"]["rng"]["type"] == "virtio-rng"
PY
then pass metrics-json-lines; else fail metrics-json-lines "bad metrics output"; head -c 600 "$T/cpl3.metrics"; fi

# With a device of every kind behind the PCI host: the guest assigns their
# BARs itself (absurd and overlapping values too), attacks the virtio-pci
# registers and walks every ECAM page.
truncate -s 16M "$T/hostile.img"
hostile_devs=(--rng --disk "$T/hostile.img" --net user --net user,model=e1000)
run hostile --kernel "$G/guest-hostile.elf" --cmdline "seed=12345" "${hostile_devs[@]}"
expect_rc hostile-status "0"
expect_out hostile-survived "$out" "hostile survived"
# All five functions (host bridge, rng, blk, net, e1000), the three virtio ones attacked, all 256 ECAM pages.
expect_out hostile-pci-attacked "$out" "hostile pci functions=5 virtio-attacked=3 ecam-pages=256"
if [ -n "$KESTREL_ASAN" ] && [ -x "$KESTREL_ASAN" ]; then
	KESTREL=$KESTREL_ASAN RUN_TIMEOUT=300 run hostile-asan --kernel "$G/guest-hostile.elf" --cmdline "seed=777" \
		"${hostile_devs[@]}"
	KESTREL=$KESTREL_ASAN
	expect_rc hostile-asan-status "0"
	expect_out hostile-asan-survived "$out" "hostile survived"
	expect_out hostile-asan-pci-attacked "$out" "hostile pci functions=5 virtio-attacked=3 ecam-pages=256"
	if grep -q "Sanitizer" "$err"; then fail hostile-asan-clean "sanitizer report"; show_tail "$err" 40
	else pass hostile-asan-clean; fi
	# Every kind of device set up and torn down again (their I/O threads' loops go last).
	truncate -s 16M "$T/teardown.img"
	KESTREL=$KESTREL_ASAN run teardown-asan --kernel "$G/guest-hello.elf" --console none --cmdline exit=0 \
		--disk "$T/teardown.img" --net user --net user,model=e1000 --rng
	if [ "$rc" = 0 ] && ! grep -q "Sanitizer" "$err"; then pass asan-teardown-all-devices
	else fail asan-teardown-all-devices "status $rc"; show_tail "$err" 40; fi
fi

# A stock Linux kernel on a KVM without hardware virtualization is refused
# with a pointer to the test bed (a synthetic bzImage is enough to reach the check).
python3 - "$T/bzImage" <<'PY'
import struct, sys
img = bytearray(4096 * 4)
img[0x1f1] = 1                              # setup_sects
img[0x1fe:0x200] = b'\x55\xaa'
img[0x200] = 0xeb                           # jmp over the header
img[0x201] = 0x66                           # header ends at 0x202 + 0x66
img[0x202:0x206] = b'HdrS'
struct.pack_into('<H', img, 0x206, 0x020f)  # protocol 2.15
img[0x211] = 0x01                           # LOADED_HIGH
struct.pack_into('<I', img, 0x214, 0x100000)
struct.pack_into('<I', img, 0x22c, 0x7fffffff)   # initrd_addr_max
struct.pack_into('<I', img, 0x230, 0x200000)     # kernel_alignment
img[0x234] = 1                              # relocatable
struct.pack_into('<H', img, 0x236, 0x1)     # xloadflags: XLF_KERNEL_64
struct.pack_into('<I', img, 0x238, 2048)    # cmdline_size
struct.pack_into('<Q', img, 0x258, 0x1000000)  # pref_address
struct.pack_into('<I', img, 0x260, 0x400000)   # init_size
open(sys.argv[1], 'wb').write(img)
PY
if grep -qw -e vmx -e svm /proc/cpuinfo; then
	skip stock-kernel-refused-on-software-kvm "this host has hardware virtualization"
else
	run bzimage --kernel "$T/bzImage" --memory 128M
	if [ "$rc" = 1 ] && grep -q "test bed" "$err"; then pass stock-kernel-refused-on-software-kvm
	else fail stock-kernel-refused-on-software-kvm "status $rc: $(head -c 300 "$err")"; fi
fi

[ "$CHECK_FAILS" = 0 ]
