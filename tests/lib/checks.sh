# Shared helpers for the shell test scripts. Output contract (counted by
# tests/run.sh): one line per check, "PASS: name", "FAIL: name: why" or
# "SKIP: name: why".
CHECK_FAILS=0

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1: $2"; CHECK_FAILS=$((CHECK_FAILS + 1)); }
skip() { echo "SKIP: $1: $2"; }

# check NAME CONDITION-COMMAND... : PASS if the command succeeds.
check() {
	local name=$1; shift
	if "$@"; then pass "$name"; else fail "$name" "${CHECK_WHY:-condition failed: $*}"; fi
	CHECK_WHY=
}

# Print a file's tail indented, for failure context in CI logs.
show_tail() {
	[ -f "$1" ] || return 0
	echo "---- last lines of $1 ----"
	tail -n "${2:-20}" "$1" | sed 's/^/    /'
	echo "----"
}
