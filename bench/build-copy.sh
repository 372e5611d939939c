#!/usr/bin/env bash
# Issue 2's benchmark: COPY of a context with 10,000 files of 4 KiB and one 500 MiB file into
# FROM scratch. Cold build and no-change rebuild, kiln against buildah (runc, --timestamp 0)
# and, when a Docker engine with BuildKit can be driven here, BuildKit. Same machine, same run.
# Usage: bench/build-copy.sh [RUNS]   (prints a markdown table; needs scripts/setup first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
work=$(mktemp -d /var/tmp/kiln-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
ctx=${BENCH_CTX:-/var/tmp/kiln-bench-ctx}
bash bench/gen-context.sh "$ctx" >&2
cargo build --release -q -p kiln
kiln=$(pwd)/target/release/kiln
export RESULTS=$work/results BENCH_LOG=$work/log
: > "$RESULTS"
sync

for i in $(seq "$runs"); do
  rm -rf "$work/kiln"
  measure kiln-cold env KILN_HOME="$work/kiln" "$kiln" build -q -t bench:1 "$ctx"
  measure kiln-rebuild env KILN_HOME="$work/kiln" "$kiln" build -q -t bench:1 "$ctx"

  rm -rf "$work/buildah"
  b=(buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver overlay)
  measure buildah-cold "${b[@]}" bud --runtime runc --timestamp 0 --layers -q -t bench:1 "$ctx"
  measure buildah-rebuild "${b[@]}" bud --runtime runc --timestamp 0 --layers -q -t bench:1 "$ctx"
  "${b[@]}" rmi -a -f >/dev/null 2>&1 || true
  rm -rf "$work/buildah" 2>/dev/null || true

  if docker buildx version >/dev/null 2>&1; then
    docker builder prune -af >/dev/null 2>&1 || true
    measure buildkit-cold env DOCKER_BUILDKIT=1 docker build -q -t kiln-bench:1 "$ctx"
    measure buildkit-rebuild env DOCKER_BUILDKIT=1 docker build -q -t kiln-bench:1 "$ctx"
  fi
done

k_cold=$(median kiln-cold 2); k_re=$(median kiln-rebuild 2)
b_cold=$(median buildah-cold 2); b_re=$(median buildah-rebuild 2)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || a == 0) print "n/a"; else printf "%.1fx", b / a }'; }
echo "### COPY of 10,000 × 4 KiB + 1 × 500 MiB into FROM scratch ($(date -u +%F), $(machine), median of $runs)"
echo
echo "| tool | cold build | no-change rebuild | peak memory (cold) | kiln is faster by (cold / rebuild) |"
echo "|---|---|---|---|---|"
echo "| kiln $(git rev-parse --short HEAD) | ${k_cold} s | ${k_re} s | $(( $(median kiln-cold 3) / 1024 )) MiB | - |"
echo "| buildah $(buildah --version | awk '{ print $3 }') (runc, --timestamp 0, --layers) | ${b_cold} s | ${b_re} s | $(( $(median buildah-cold 3) / 1024 )) MiB | $(ratio "$k_cold" "$b_cold") / $(ratio "$k_re" "$b_re") |"
if grep -q buildkit-cold "$RESULTS"; then
  bk_cold=$(median buildkit-cold 2); bk_re=$(median buildkit-rebuild 2)
  echo "| BuildKit (docker.io) | ${bk_cold} s | ${bk_re} s | (daemon) | $(ratio "$k_cold" "$bk_cold") / $(ratio "$k_re" "$bk_re") |"
else
  echo "| BuildKit (docker.io) | not run: Debian 12's docker.io has no buildx, and its CLI refuses DOCKER_BUILDKIT=1 without it | | | |"
fi
