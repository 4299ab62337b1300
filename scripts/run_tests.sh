#!/usr/bin/env bash
# Runs every test program in $1 (default build/tests) and the CLI tests, adds
# up their "N passed, N failed" lines and ends with the total. Exit code is the
# verdict: non-zero if any test failed or any program crashed.
set -u
dir=${1:-build/tests}
bin=${2:-build/matquant}
passed=0; failed=0; crashed=0
for t in "$dir"/test_*; do
  [ -x "$t" ] || continue
  out=$("$t" 2> >(sed "s|^|  $(basename "$t"): |" >&2)); rc=$?
  echo "$out"
  line=$(echo "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  if [ -z "$line" ]; then
    echo "  $(basename "$t"): exited $rc without a summary line"; crashed=$((crashed+1)); continue
  fi
  p=$(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  passed=$((passed+p)); failed=$((failed+f))
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then echo "  $(basename "$t"): exit code $rc"; crashed=$((crashed+1)); fi
done
for s in tests/test_*.sh; do
  [ -f "$s" ] || continue
  out=$(MQ_BIN="$bin" bash "$s" 2>&1); rc=$?
  echo "$out" | grep -E '^(FAIL|SKIP)' | sed "s|^|  $(basename "$s"): |"
  line=$(echo "$out" | grep -E '[0-9]+ passed, [0-9]+ failed' | tail -n 1)
  echo "$line"
  if [ -z "$line" ]; then echo "  $(basename "$s"): exited $rc without a summary line"; crashed=$((crashed+1)); continue; fi
  p=$(echo "$line" | sed -E 's/.* ([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  passed=$((passed+p)); failed=$((failed+f))
done
failed=$((failed+crashed))
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
