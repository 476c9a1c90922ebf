#!/usr/bin/env bash
# End-to-end: kestrel boots a stock Debian kernel (bzImage) plus a busybox
# initramfs as L2, inside the nested test bed (testbed/README.md), in one
# test-bed boot, in which kestrel runs twice:
#  1. --cpus 2: the guest's uname -r is the test-bed kernel's, it sees 2 CPUs,
#     the PCI host bridge, the CMOS RTC with the host's year, the serial port's
#     interrupts and the ACPI tables; `reboot -f` (no reboot= option) ends kestrel with 0.
#  2. --cpus 1 --stats: `poweroff -f` (ACPI S5) ends kestrel with 0, and the
#     exit statistics are printed.
#
# Output: one line per check, PASS:/FAIL:/SKIP:; exit 1 if any FAIL.
# Environment:
#   KESTREL           kestrel binary (default: build/kestrel of this repository)
#   E2E_TIMEOUT       seconds for the whole test-bed boot (default 540)
#   E2E_TESTBED_ARGS  extra testbed.sh options, word-split (e.g. "--keep DIR")
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
testbed=$repo/testbed
kestrel=${KESTREL:-$repo/build/kestrel}
case $kestrel in /*) ;; *) kestrel=$PWD/$kestrel ;; esac
timeout=${E2E_TIMEOUT:-540}
# kestrel gets less than the whole boot, so that a hang still leaves time
# for L1 to report.
inner_timeout=$((timeout - 60))
name=boot_linux

failed=0
pass() { echo "PASS: $name/$1"; }
fail() { echo "FAIL: $name/$1: $2"; failed=1; }
skip() { echo "SKIP: $name/$1: $2"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kestrel-e2e.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/testbed.out

console_tail() {
    echo "--- last lines of the test-bed console ---"
    tail -n "${1:-80}" "$out" | sed 's/^/  | /'
    echo "--- end of console ---"
}

# Things outside the project that stop the test bed from running at all.
# shellcheck source=testbed/lib.sh
. "$testbed/lib.sh"
if ! tb_ensure_tools 2>"$work/tools.err"; then
    skip testbed "host tools unavailable: $(tail -n 1 "$work/tools.err")"
    exit 0
fi
if ! "$testbed/fetch.sh" >"$work/fetch.out" 2>"$work/fetch.err"; then
    skip testbed "cannot fetch the test-bed packages: $(tail -n 1 "$work/fetch.err")"
    exit 0
fi
kver=$(sed -n 's/^TB_KVER=//p' "$work/fetch.out")

if [ ! -x "$kestrel" ]; then
    fail kestrel-binary "not found or not executable: $kestrel (build it first)"
    exit 1
fi
pass kestrel-binary

cat >"$work/l2-init" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "KESTREL-E2E uname=$(uname -r)"
echo "KESTREL-E2E cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "KESTREL-E2E hostbridge=$(cat /sys/bus/pci/devices/0000:00:00.0/vendor 2>/dev/null):$(cat /sys/bus/pci/devices/0000:00:00.0/device 2>/dev/null)"
echo "KESTREL-E2E rtc=$(cat /sys/class/rtc/rtc0/name 2>/dev/null) $(cat /sys/class/rtc/rtc0/date 2>/dev/null)"
echo "KESTREL-E2E serial-irqs=$(awk '/ttyS0/ {n=0; for (i=2; i<=NF; i++) if ($i ~ /^[0-9]+$/) n+=$i; else break; print n}' /proc/interrupts)"
echo "KESTREL-E2E acpi=$(ls /sys/firmware/acpi/tables 2>/dev/null | tr '\n' ',')"
case " $(cat /proc/cmdline) " in
*" e2e_end=poweroff "*) testbed-drain; poweroff -f ;;
*) testbed-drain; reboot -f ;;
esac
EOF

# No reboot= option: `reboot -f` takes Linux's default path (on kestrel's
# HW-reduced ACPI without EFI: the real-mode reset vector, see README), which
# must end kestrel with status 0. panic=-1 ends a panicking guest at once
# instead of at the timeout (its missing output still fails the checks);
# earlyprintk shows how far a guest got if it dies early.
cmdline="console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1"
start=$(date +%s)
# The L1 command expands $1/$2 itself, hence single quotes.
# shellcheck disable=SC2086,SC2016
"$testbed/testbed.sh" --vmm "$kestrel" --l2-init "$work/l2-init" \
    --add "$here/l1-run-kestrel:/usr/bin/l1-run-kestrel" \
    --timeout "$timeout" ${E2E_TESTBED_ARGS:-} -- \
    sh -c 'l1-run-kestrel "$1" run --kernel /l2/vmlinuz --initrd /l2/initrd \
               --cpus 2 --memory 512M --cmdline "$2"
           rc=$?
           echo "KESTREL-E2E-L1 kestrel-rc=$rc"
           l1-run-kestrel "$1" run --kernel /l2/vmlinuz --initrd /l2/initrd \
               --cpus 1 --memory 256M --stats --cmdline "$2 e2e_end=poweroff"
           rc2=$?
           echo "KESTREL-E2E-L1 kestrel-poweroff-rc=$rc2"
           [ $rc = 0 ] && [ $rc2 = 0 ]' sh "$((inner_timeout / 2))" "$cmdline" \
    </dev/null >"$out" 2>&1
tbrc=$?
wall=$(($(date +%s) - start))
echo "# $name: test bed finished with status $tbrc after ${wall} s"

ok=1
case $tbrc in
    124) fail testbed "timed out after ${timeout} s"; ok=0 ;;
    125) fail testbed "L1 ended without reporting a status"; ok=0 ;;
    *) if grep -q '^TESTBED: /dev/kvm ready' "$out"; then
           pass testbed
       else
           fail testbed "no /dev/kvm in L1"; ok=0
       fi ;;
esac

if [ "$ok" = 1 ]; then
    krc=$(sed -n 's/.*KESTREL-E2E-L1 kestrel-rc=\([0-9]*\).*/\1/p' "$out" | head -n 1)
    case $krc in
        0) pass kestrel-exit-status ;;
        '') fail kestrel-exit-status "no status line from L1" ;;
        124) fail kestrel-exit-status "kestrel still running after $((inner_timeout / 2)) s (killed)" ;;
        *) fail kestrel-exit-status "kestrel exited with $krc" ;;
    esac
    # Status 0 must come from the reset path (reset vector / reset register),
    # not from a guest that died: a triple fault also ends kestrel with 0.
    if grep -q "triple fault" "$out"; then
        fail reset-without-triple-fault "the L2 guest triple-faulted:"
        grep -B 20 -A 22 "triple fault" "$out" | tail -n 45 | sed 's/^/  # /'
    else
        pass reset-without-triple-fault
    fi

    uname=$(sed -n 's/.*KESTREL-E2E uname=\([^ ]*\).*/\1/p' "$out" | head -n 1 | tr -d '\r')
    if [ -z "$uname" ]; then
        fail l2-uname "the guest never printed its uname"
    elif [ "$uname" = "$kver" ]; then
        pass l2-uname
    else
        fail l2-uname "guest says '$uname', expected '$kver'"
    fi

    cpus=$(sed -n 's/.*KESTREL-E2E cpus=\([0-9]*\).*/\1/p' "$out" | head -n 1)
    if [ -z "$cpus" ]; then
        fail l2-cpus "the guest never printed its CPU count"
    elif [ "$cpus" = 2 ]; then
        pass l2-cpus
    else
        fail l2-cpus "guest sees $cpus CPUs, expected 2"
    fi

    # value KEY: the first boot's KESTREL-E2E KEY=... line
    value() { sed -n "s/.*KESTREL-E2E $1=\(.*\)/\1/p" "$out" | head -n 1 | tr -d '\r'; }
    hb=$(value hostbridge)
    if [ "$hb" = "0x8086:0x0d57" ]; then pass l2-pci-host-bridge
    else fail l2-pci-host-bridge "00:00.0 is '$hb', expected 0x8086:0x0d57"; fi

    rtc=$(value rtc)
    year=$(date -u +%Y)
    case $rtc in
        "rtc_cmos"*" $year-"*) pass l2-rtc-host-time ;;
        *) fail l2-rtc-host-time "rtc0 says '$rtc', expected rtc_cmos with year $year" ;;
    esac

    irqs=$(value serial-irqs)
    if [ -n "$irqs" ] && [ "$irqs" -gt 0 ]; then pass l2-uart-interrupts
    else fail l2-uart-interrupts "ttyS0 interrupt count '$irqs'"; fi

    acpi=$(value acpi)
    missing=
    for t in APIC FACP DSDT MCFG; do
        case ",$acpi" in *",$t,"*) ;; *) missing="$missing $t" ;; esac
    done
    if [ -z "$missing" ]; then pass l2-acpi-tables
    else fail l2-acpi-tables "missing:$missing (have: $acpi)"; fi

    prc=$(sed -n 's/.*KESTREL-E2E-L1 kestrel-poweroff-rc=\([0-9]*\).*/\1/p' "$out" | tail -n 1)
    if [ "$prc" = 0 ] && grep -q "reboot: Power down" "$out"; then pass acpi-poweroff-exit-status
    else fail acpi-poweroff-exit-status "kestrel exited with '$prc' after poweroff -f"; fi

    if grep -q "kestrel: exits by reason" "$out" && grep -q "uart-com1" "$out"; then pass stats-printed
    else fail stats-printed "no --stats table in the output"; fi
fi

[ "$failed" = 0 ] || console_tail 80
exit "$failed"
