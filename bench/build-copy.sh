#!/usr/bin/env bash
# Issue 2's benchmark: COPY of a context with 10,000 files of 4 KiB and one 500 MiB file into
# FROM scratch. Cold build and no-change rebuild, kiln against buildah (runc, --timestamp 0)
# and BuildKit (Debian's dockerd 20.10 through ../shared/peers/buildkit; cold = its build cache
# pruned and the image removed). Same machine, same run.
# Usage: bench/build-copy.sh [RUNS]   (prints a markdown table; needs scripts/setup first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
work=$(mktemp -d /var/tmp/kiln-bench.XXXXXX)
cleanup() {
  [ "${bk:-no}" = yes ] && bk_reset kiln-bench:1
  umount -R "$work/buildah/root/overlay" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ctx=${BENCH_CTX:-/var/tmp/kiln-bench-ctx}
bash bench/gen-context.sh "$ctx" >&2
kiln_binary
export RESULTS=$work/results BENCH_LOG=$work/log
: > "$RESULTS"
bk_start
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

  if [ "$bk" = yes ]; then
    bk_reset kiln-bench:1
    measure buildkit-cold "$peer" build -q -t kiln-bench:1 "$ctx"
    measure buildkit-rebuild "$peer" build -q -t kiln-bench:1 "$ctx"
    bk_reset kiln-bench:1
  fi
done

k_cold=$(median kiln-cold 2); k_re=$(median kiln-rebuild 2)
b_cold=$(median buildah-cold 2); b_re=$(median buildah-rebuild 2)
echo "### COPY of 10,000 × 4 KiB + 1 × 500 MiB into FROM scratch ($(date -u +%F), $(machine), load average $(load), median of $runs)"
echo
echo "| tool | cold build | no-change rebuild | peak memory (cold) | kiln / tool (cold / rebuild) |"
echo "|---|---|---|---|---|"
echo "| kiln ${rev} | ${k_cold} s | ${k_re} s | $(( $(median kiln-cold 3) / 1024 )) MiB | - |"
echo "| buildah $(buildah --version | awk '{ print $3 }') (runc, --timestamp 0, --layers) | ${b_cold} s | ${b_re} s | $(( $(median buildah-cold 3) / 1024 )) MiB | $(x "$k_cold" "$b_cold") / $(x "$k_re" "$b_re") |"
if grep -q buildkit-cold "$RESULTS"; then
  bk_cold=$(median buildkit-cold 2); bk_re=$(median buildkit-rebuild 2)
  echo "| BuildKit (dockerd $(bk_version)) | ${bk_cold} s | ${bk_re} s | (daemon) | $(x "$k_cold" "$bk_cold") / $(x "$k_re" "$bk_re") |"
  echo
  echo "No-change rebuild, kiln / BuildKit: $(x "$k_re" "$bk_re") (target ≤ 0.2x: $(target "$k_re" "$bk_re" 0.2))."
else
  echo "| BuildKit | not run: ../shared/peers/buildkit start failed | | | |"
fi
