#!/usr/bin/env bash
# Run every kestrel test and end with one summary line "N passed, N failed, N skipped".
#   1. unit tests (cmocka) built with ASan + UBSan
#   2. fuzz targets, each for a bounded time (FUZZ_SECONDS, default 20)
#   3. KVM tests with the freestanding guests on this machine's /dev/kvm
#   4. API tests: the control API over its Unix socket with curl
#   5. end-to-end tests with a stock Linux guest in the nested test bed
# Each script prints PASS:/FAIL:/SKIP: lines; this script counts them.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT
passed=0 failed=0 skipped=0

count() { # FILE: add its PASS/FAIL/SKIP lines to the totals
	local p f s
	p=$(grep -c '^PASS: ' "$1")
	f=$(grep -c '^FAIL: ' "$1")
	s=$(grep -c '^SKIP: ' "$1")
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

section() { echo; echo "=== $* ==="; }

# A stage whose script fails without printing a FAIL line still counts as one failure.
stage() { # NAME CMD...
	local name=$1; shift
	local out=$LOG/$name.log
	"$@" 2>&1 | tee "$out"
	local rc=${PIPESTATUS[0]}
	count "$out"
	if [ "$rc" != 0 ] && ! grep -q '^FAIL: ' "$out"; then
		echo "FAIL: $name: exited with status $rc"
		failed=$((failed + 1))
	fi
}

# The test bed's Debian kernel doubles as a real bzImage for the loader's unit
# tests (downloaded once, cached outside the tree).
if [ -z "${KESTREL_TEST_BZIMAGE:-}" ] && fetched=$(testbed/fetch.sh 2>/dev/null); then
	KESTREL_TEST_BZIMAGE=$(sed -n 's/^TB_VMLINUZ=//p' <<<"$fetched")
	export KESTREL_TEST_BZIMAGE
fi

section "unit tests (ASan + UBSan)"
unit_tests() {
	[ -d "$ASAN_BUILD" ] || meson setup "$ASAN_BUILD" -Db_sanitize=address,undefined \
		-Db_lundef=false >/dev/null || return 1
	ninja -C "$ASAN_BUILD" >"$LOG/asan-build.log" 2>&1 || { tail -30 "$LOG/asan-build.log"; return 1; }
	local t rc
	for t in "$ASAN_BUILD"/tests/unit/test_*; do
		[ -f "$t" ] && [ -x "$t" ] || continue
		# TAP output per test case, turned into the PASS/FAIL contract.
		CMOCKA_MESSAGE_OUTPUT=TAP UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
			"$t" >"$LOG/unit.tap" 2>&1
		rc=$?
		sed -n -e "s/^ok [0-9]* - \(.*\)/PASS: unit $(basename "$t"): \1/p" \
		       -e "s/^not ok [0-9]* # SKIP \(.*\)/SKIP: unit $(basename "$t"): \1/p" \
		       -e "s/^not ok [0-9]* - \(.*\)/FAIL: unit $(basename "$t"): \1/p" "$LOG/unit.tap"
		if [ "$rc" != 0 ] && ! grep -q '^not ok [0-9]* - ' "$LOG/unit.tap"; then
			echo "FAIL: unit $(basename "$t"): exited with status $rc"
			cat "$LOG/unit.tap"
		elif grep -q '^not ok [0-9]* - ' "$LOG/unit.tap"; then
			cat "$LOG/unit.tap"
		fi
	done
}
stage unit unit_tests

if [ -x fuzz/run.sh ]; then
	section "fuzz targets (${FUZZ_SECONDS:-20} s each)"
	stage fuzz fuzz/run.sh "${FUZZ_SECONDS:-20}"
fi

section "KVM tests (freestanding guests)"
stage kvm env BUILD="$root/$BUILD" KESTREL_ASAN="$root/$ASAN_BUILD/kestrel" tests/kvm/test_guests.sh
stage kvm-vmstate env BUILD="$root/$BUILD" KESTREL="$root/$BUILD/kestrel" tests/kvm/test_vmstate.sh
stage kvm-snapshot env BUILD="$root/$BUILD" tests/kvm/test_snapshot.sh
stage kvm-ratelimit env BUILD="$root/$BUILD" tests/kvm/test_ratelimit.sh
stage kvm-robust env BUILD="$root/$BUILD" tests/kvm/test_robust.sh
stage kvm-vhost-user env BUILD="$root/$BUILD" tests/kvm/test_vhost_user.sh
stage kvm-vhost-user-net env BUILD="$root/$BUILD" tests/kvm/test_vhost_user_net.sh

section "API tests (control API over the Unix socket)"
stage api env BUILD="$root/$BUILD" tests/api/api.sh
stage api-robust env BUILD="$root/$BUILD" tests/api/robust.sh

section "end-to-end tests (stock Linux in the nested test bed)"
# A test-bed script counts on its first run, with one exception: when the
# test bed reports "L1 wedged" (L1's kernel stopped running anything at all,
# its own watchdogs included; evidence in testbed/README.md), the script is
# run once more and only that run counts. The first run's failures stay in
# the log, prefixed "# first try:". Every other failure counts at once.
for t in tests/e2e/*.sh; do
	[ -f "$t" ] && [ -x "$t" ] || continue
	n="e2e-$(basename "$t" .sh)"
	env KESTREL="$root/$BUILD/kestrel" "$t" >"$LOG/$n.first" 2>&1
	rc=$?
	if [ "$rc" != 0 ] && grep -q 'testbed: L1 wedged' "$LOG/$n.first"; then
		sed -n 's/^FAIL: /# first try: FAIL: /p' "$LOG/$n.first"
		echo "# $n: L1 wedged (testbed/README.md); running it once more"
		stage "$n" env KESTREL="$root/$BUILD/kestrel" "$t"
		continue
	fi
	cat "$LOG/$n.first"
	count "$LOG/$n.first"
	if [ "$rc" != 0 ] && ! grep -q '^FAIL: ' "$LOG/$n.first"; then
		echo "FAIL: $n: exited with status $rc"
		failed=$((failed + 1))
	fi
done

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
