#!/usr/bin/env bash
# Build every libFuzzer target (fuzz/fuzz_<name>.c) with clang, ASan and
# UBSan in its own build directory, then run each for SECONDS (default 30)
# from generated seeds (fuzz_seedgen), fuzz/corpus/<name>/ when it exists,
# and what earlier runs kept in fuzz/corpus-run/<name>/.
#
# Prints "PASS: fuzz_<name>" or "FAIL: fuzz_<name>: <reason>" per target and
# exits non-zero if any failed. Crash inputs are kept under
# build-fuzz/fuzz/artifacts/<name>/; reproduce with
#   build-fuzz/fuzz/fuzz_<name> <artifact>
#
# Environment: KESTREL_FUZZ_BUILD (build dir, default <repo>/build-fuzz).
set -uo pipefail

secs=${1:-30}
case $secs in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS]" >&2
	exit 2
	;;
esac

src=$(cd "$(dirname "$0")/.." && pwd)
build=${KESTREL_FUZZ_BUILD:-$src/build-fuzz}
corpus_root=$src/fuzz/corpus-run

names=()
for f in "$src"/fuzz/fuzz_*.c; do
	[ -e "$f" ] || continue
	n=${f##*/fuzz_}
	names+=("${n%.c}")
done
if [ ${#names[@]} -eq 0 ]; then
	echo "FAIL: fuzz: no fuzz/fuzz_*.c targets found"
	exit 1
fi

fail_all() {
	for n in "${names[@]}"; do
		echo "FAIL: fuzz_$n: $1"
	done
	exit 1
}

command -v clang >/dev/null || fail_all "clang is not installed (libFuzzer comes with clang)"
command -v meson >/dev/null || fail_all "meson is not installed"

# A build dir made with another compiler cannot be switched to clang in place.
if [ -f "$build/build.ninja" ] &&
	! grep -q '"id": "clang"' "$build/meson-info/intro-compilers.json" 2>/dev/null; then
	rm -rf "$build"
fi

opts=(-Db_sanitize=address,undefined -Dfuzz=true -Db_lundef=false)
setup_log=$(mktemp)
trap 'rm -f "$setup_log"' EXIT
if [ -f "$build/build.ninja" ]; then
	meson configure "$build" "${opts[@]}" >"$setup_log" 2>&1
else
	CC=clang meson setup "$build" "${opts[@]}" >"$setup_log" 2>&1
fi || {
	tail -n 20 "$setup_log" >&2
	fail_all "meson setup of $build failed"
}

if ! grep -q 'fuzz/fuzz_seedgen' "$build/build.ninja"; then
	fail_all "fuzz/ is not built: the top-level meson.build needs \"if get_option('fuzz') subdir('fuzz') endif\""
fi

targets=(fuzz/fuzz_seedgen)
for n in "${names[@]}"; do
	targets+=("fuzz/fuzz_$n")
done
build_log=$build/fuzz/build.log
mkdir -p "$build/fuzz"
if ! ninja -C "$build" -j2 "${targets[@]}" >"$build_log" 2>&1; then
	grep -E 'error|FAILED' "$build_log" | head -n 20 >&2
	fail_all "build failed (see $build_log)"
fi

status=0
for n in "${names[@]}"; do
	exe=$build/fuzz/fuzz_$n
	corpus=$corpus_root/$n
	artifacts=$build/fuzz/artifacts/$n
	log=$build/fuzz/fuzz_$n.log
	mkdir -p "$corpus" "$artifacts"
	if ! "$build/fuzz/fuzz_seedgen" "$n" "$corpus"; then
		echo "FAIL: fuzz_$n: seed generation failed"
		status=1
		continue
	fi
	dirs=("$corpus")
	[ -d "$src/fuzz/corpus/$n" ] && dirs+=("$src/fuzz/corpus/$n")

	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		timeout $((secs + 120)) "$exe" -max_total_time="$secs" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
		"${dirs[@]}" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	if [ $rc -eq 0 ]; then
		echo "PASS: fuzz_$n"
		echo "fuzz_$n: ${runs:-?} runs in ${secs}s, corpus $(ls "$corpus" | wc -l) inputs" >&2
	else
		why=$(grep -m1 -E '^SUMMARY:|runtime error:|ERROR: libFuzzer' "$log" | cut -c1-200)
		crash=$(ls -t "$artifacts" 2>/dev/null | head -n 1)
		[ $rc -eq 124 ] && why=${why:-"did not stop after ${secs}s"}
		echo "FAIL: fuzz_$n: ${why:-exit status $rc}${crash:+ (input: $artifacts/$crash)} (log: $log)"
		status=1
	fi
done
exit $status
