#!/usr/bin/env bash
# End-to-end: pause, snapshot and restore with a stock Debian kernel in the
# nested test bed, all in one test-bed boot (L1 side: l1-snapshot, L2 /init:
# l2-snapshot):
#   - kestrel --api-sock --config-file boots L2 with a virtio-blk ext4 disk
#     and the console on a file; the guest writes a 4 MiB file, syncs, and
#     counts on its console;
#   - at count >= 10: kestrel pause (nothing more is printed), kestrel
#     snapshot, kill -9; a new kestrel process gets PUT /serial and
#     PUT /snapshot/load (resume_vm): the count goes on from where it stopped,
#     one unbroken sequence across both processes, and the file read back from
#     the disk after the restore has its md5 from before;
#   - the guest then runs rounds of I/O (8 x 2 MiB written, fsync'd, read back
#     past the page cache, checked) while L1 pauses it for 0.3 s and resumes
#     it, again and again: every checksum matches, nothing is lost;
#   - after the guest has reset, the disk image holds what the guest wrote.
# Output: PASS:/FAIL:/SKIP: lines, "# " lines with timings; exit 1 on any FAIL.
set -uo pipefail
. "$(dirname "$0")/e2e-lib"
e2e_setup snapshot

mkfs.ext4 -q -F -L ksnap "$work/disk.img" 64M || { fail mkfs "mkfs.ext4 failed"; exit 1; }
curl_bin=$(command -v curl) || { skip testbed "curl is not installed on this host (the L1 side needs it)"; exit 0; }

e2e_testbed --vmm "$kestrel" --l2-init "$here/l2-snapshot" \
	--l2-modules virtio_pci,virtio_blk \
	--l1-modules loop \
	--add "$here/l1-snapshot:/usr/bin/l1-snapshot" \
	--add-bin "$curl_bin:/usr/bin/curl" \
	--add "$work/disk.img:/disk.img" \
	--timeout "$timeout" ${E2E_TESTBED_ARGS:-} -- \
	sh /usr/bin/l1-snapshot "$((timeout - 60))"
echo "# $name: test bed finished with status $tbrc"

# key=value from the L1 lines (several per line).
l1kv() { sed -n "s/.*KESTREL-E2E-L1 .*\\b$1=\\([^ ]*\\).*/\\1/p" "$out" | head -n 1 | tr -d '\r'; }
ok2xx() { case $1 in 2[0-9][0-9]) return 0 ;; *) return 1 ;; esac; }

if ! grep -q "KESTREL-E2E-L1 done" "$out"; then
	fail l1-script "the L1 side did not finish (test bed status $tbrc)"
fi
bc=$(l1kv boot-count)
if [ -n "$bc" ]; then pass guest-counts-on-console
else fail guest-counts-on-console "no count >= 10 on the console ($(grep -o 'KESTREL-E2E-L1 boot-failed.*' "$out" | head -n 1))"; fi

# --- pause and snapshot in the first process ---
[ "$(l1kv pause-rc)" = 0 ] && pass pause || fail pause "kestrel pause: rc '$(l1kv pause-rc)' $(grep -o 'pause-rc=[^ ]* .*' "$out" | head -n 1)"
case $(l1kv status-paused) in *'"state":"Paused"'*) pass status-paused ;; *) fail status-paused "status '$(l1kv status-paused)'" ;; esac
[ "$(l1kv quiet-while-paused)" = yes ] && pass paused-vm-prints-nothing || fail paused-vm-prints-nothing "console grew while paused: $(l1kv quiet-while-paused)"
[ "$(l1kv snapshot-rc)" = 0 ] && pass snapshot-create || fail snapshot-create "$(grep -o 'snapshot-rc=.*' "$out" | head -n 1)"

# --- restore in a new process ---
ok2xx "$(l1kv serial-http)" && pass restore-serial-config || fail restore-serial-config "PUT /serial: $(grep -o 'serial-http=.*' "$out" | head -n 1)"
ok2xx "$(l1kv load-http)" && pass snapshot-load || fail snapshot-load "PUT /snapshot/load: $(grep -o 'load-http=.*' "$out" | head -n 1)"
case $(l1kv status-restored) in *'"state":"Running"'*) pass status-running-after-load ;; *) fail status-running-after-load "status '$(l1kv status-restored)'" ;; esac

last=$(l1kv last-count)
# The guest starts its I/O rounds at count 40 (l2-snapshot): the snapshot must come before.
if [ -n "$last" ] && [ "$last" -ge 40 ]; then
	fail snapshot-before-io "the snapshot came at count $last, after the guest's I/O had started (L1 too slow?)"
fi
first=$(l1kv c2-first-count)
midline=$(l1kv c1-ends-midline)
if [ -n "$last" ] && [ -n "$first" ] &&
	{ [ "$first" = $((last + 1)) ] || { [ "$midline" = yes ] && [ "$first" = $((last + 2)) ]; }; }; then
	pass count-continues-after-restore
else
	fail count-continues-after-restore "last count before the snapshot '$last', first after the restore '$first' (first console ended mid-line: $midline)"
fi
seq_line=$(grep -o 'KESTREL-E2E-L1 seq .*' "$out" | head -n 1 | tr -d '\r')
s_first=$(sed -n 's/.* first=\([0-9]*\).*/\1/p' <<<"$seq_line")
s_last=$(sed -n 's/.* last=\([0-9]*\).*/\1/p' <<<"$seq_line")
s_breaks=$(sed -n 's/.* breaks=\([0-9]*\).*/\1/p' <<<"$seq_line")
if [ "$s_first" = 1 ] && [ "$s_breaks" = 0 ] && [ -n "$last" ] && [ "${s_last:-0}" -ge $((last + 50)) ]; then
	pass count-unbroken-across-processes
else
	fail count-unbroken-across-processes "${seq_line:-no sequence summary} (snapshot at $last; want 1..>=$((${last:-0} + 50)), no breaks)"
fi

# --- the file written before the snapshot ---
dmd5=$(value data-md5)
after=0 mism=0
while read -r n sum; do
	[ "$sum" = "$dmd5" ] || { mism=$((mism + 1)); echo "# md5 at count $n: $sum (written: $dmd5)"; }
	[ -n "$last" ] && [ "$n" -gt "$last" ] && after=$((after + 1))
done < <(sed -n 's/^KESTREL-E2E md5 \([0-9]*\) \([0-9a-f]*\).*/\1 \2/p' "$out")
if [ -n "$dmd5" ] && [ "$mism" = 0 ] && [ "$after" -ge 1 ]; then
	pass file-intact-after-restore
else
	fail file-intact-after-restore "written md5 '$dmd5', $mism mismatching re-reads, $after re-reads after the restore"
fi

# --- pause/resume during I/O ---
rounds=$(sed -n 's/^KESTREL-E2E io-done rounds=\([0-9]*\) bad=\([0-9]*\).*/\1/p' "$out" | head -n 1)
bad=$(sed -n 's/^KESTREL-E2E io-done rounds=\([0-9]*\) bad=\([0-9]*\).*/\2/p' "$out" | head -n 1)
nok=$(grep -c '^KESTREL-E2E io [0-9]* f[0-9] [0-9a-f]* ok' "$out")
if [ -n "$rounds" ] && [ "$bad" = 0 ] && [ "$nok" = $((rounds * 8)) ]; then
	pass io-checksums-under-pause-resume
else
	fail io-checksums-under-pause-resume "rounds '$rounds', bad '$bad', $nok files ok (want $((${rounds:-0} * 8)))"
fi
during=$(l1kv during-io)
cfail=$(l1kv cycle-failures)
if [ "${during:-0}" -ge 3 ] && [ "$cfail" = 0 ]; then
	pass pause-resume-cycles-during-io
else
	fail pause-resume-cycles-during-io "$(grep -o 'io-cycles=.*' "$out" | head -n 1) (want >= 3 during I/O, no failures)"
fi
[ "$(value umount)" = ok ] && pass guest-unmounts-cleanly || fail guest-unmounts-cleanly "umount '$(value umount)'"
[ "$(l1kv k2-rc)" = 0 ] && pass restored-kestrel-exit-status || fail restored-kestrel-exit-status "kestrel status '$(l1kv k2-rc)'"

# --- the host's view of the disk after kestrel exited ---
h=$(sed -n 's/.*KESTREL-E2E-L1 file data.bin \([0-9a-f]*\).*/\1/p' "$out" | head -n 1)
if [ -n "$dmd5" ] && [ "$h" = "$dmd5" ]; then pass host-disk-data-file
else fail host-disk-data-file "guest wrote '$dmd5', host read '$h'"; fi
hbad=0
for i in 1 2 3 4 5 6 7 8; do
	g=$(sed -n "s/^KESTREL-E2E io ${rounds:-x} f$i \([0-9a-f]*\) ok.*/\1/p" "$out" | head -n 1)
	h=$(sed -n "s/.*KESTREL-E2E-L1 file f$i \([0-9a-f]*\).*/\1/p" "$out" | head -n 1)
	if [ -z "$g" ] || [ "$g" != "$h" ]; then
		hbad=$((hbad + 1))
		echo "# io file f$i: guest's last round wrote '$g', host read '$h'"
	fi
done
[ "$hbad" = 0 ] && pass host-disk-io-files || fail host-disk-io-files "$hbad of 8 files differ on the host"

# --- timings (informational) ---
echo "# $name: snapshot at count $last; $(grep -o 'snapshot-ms=[0-9]*' "$out" | head -n 1) (kestrel snapshot command, L1 wall), $(grep -o 'load-ms=[0-9]*' "$out" | head -n 1) (PUT /snapshot/load, L1 wall), $(grep -o 'pause-ms=[0-9]*' "$out" | head -n 1) (first pause)"
grep -o -e 'snapshot written in [0-9.]* ms' -e 'restored in [0-9.]* ms' "$out" | sed "s/^/# $name: kestrel: /"
echo "# $name: $(grep -o 'snap-state-bytes=.*' "$out" | head -n 1 | tr -d '\r')"
echo "# $name: $(grep -o 'io-cycles=.*' "$out" | head -n 1 | tr -d '\r'); I/O rounds: ${rounds:-none}"

e2e_finish
