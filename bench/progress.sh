#!/usr/bin/env bash
# Issue 17.1's cost check: does drawing progress slow a build? The same 10,000-file COPY
# (1 KiB files in 100 directories, onto the busybox test base) is built with --no-cache under
# --progress quiet, plain (stderr to a file) and tty (under util-linux `script`, a real
# pseudo-terminal of 100x40, output to a file), RUNS times each, interleaved. Prints a
# markdown table of medians and each mode's ratio to quiet.
# Usage: bench/progress.sh [RUNS]   (needs scripts/setup first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
work=$(mktemp -d /var/tmp/kiln-bench-progress.XXXXXX)
trap 'rm -rf "$work"' EXIT
# KILN_BIN: a release binary built elsewhere; default: build it.
kiln_binary
export KILN_HOME=$work/store RESULTS=$work/results
cp -r tests/conformance/base "$work/base"
(cd "$work/base" && sh -eu ./setup.sh)
"$kiln" build -q -t localhost/busybox:test "$work/base" >/dev/null
mkdir -p "$work/ctx"
for d in $(seq 0 99); do
  mkdir -p "$work/ctx/files/d$d"
  for f in $(seq 0 99); do head -c 1024 /dev/urandom > "$work/ctx/files/d$d/f$f"; done
done
printf 'FROM localhost/busybox:test\nCOPY files /files\n' > "$work/ctx/Dockerfile"
"$kiln" build -q -t warm "$work/ctx" >/dev/null   # the stat cache and base snapshot, once
for _ in $(seq "$runs"); do
  measure quiet "$kiln" build --no-cache --progress quiet -t b:quiet "$work/ctx"
  measure plain sh -c "exec '$kiln' build --no-cache --progress plain -t b:plain '$work/ctx' 2>'$work/plain.err'"
  measure tty script -qfec "stty cols 100 rows 40; exec '$kiln' build --no-cache --progress tty -t b:tty '$work/ctx'" "$work/tty.out"
done
q=$(median quiet 2)
echo "kiln $(git rev-parse --short HEAD), $runs runs each, $(machine) (shared with other builds), $(date -u +%F)"
echo
echo "| --progress | 10,000-file COPY build (median) | peak memory | ratio to quiet |"
echo "|---|---|---|---|"
for m in quiet plain tty; do
  t=$(median "$m" 2)
  echo "| $m | ${t} s | $(( $(median "$m" 3 | cut -d. -f1) / 1024 )) MiB | $(awk -v t="$t" -v q="$q" 'BEGIN { printf "%.2f", t / q }') |"
done
