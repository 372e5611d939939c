#!/usr/bin/env bash
# Issue 4's benchmark: a python image (python3-minimal and its dependencies, Debian 12,
# amd64). kiln: `kiln lock` cold (empty store: InRelease, Packages indexes, resolution), a
# build from a warm .deb cache with every layer rebuilt (--no-cache), and a fully warm build.
# Peer: debootstrap --variant=minbase --include=python3-minimal with a warm --cache-dir, then
# buildah (from scratch, add the rootfs, commit). Same machine, same run, same mirror.
# Usage: bench/debian.sh [RUNS]   (prints a markdown table; needs scripts/setup and root)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
mirror=${MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /var/tmp/kiln-bench-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
cargo build --release -q -p kiln
kiln=$(pwd)/target/release/kiln
export RESULTS=$work/results BENCH_LOG=$work/log SOURCE_DATE_EPOCH=0
: > "$RESULTS"

spec=$work/spec
mkdir -p "$spec"
sed 's/^architectures = .*/architectures = ["amd64"]/' examples/debian-python/kiln.toml > "$spec/kiln.toml"

# The peer's .deb cache is warmed once, outside the timings.
debcache=$work/debcache
mkdir -p "$debcache"
debootstrap --variant=minbase --include=python3-minimal --cache-dir="$debcache" bookworm "$work/warm-rootfs" "$mirror" >>"$BENCH_LOG" 2>&1
rm -rf "$work/warm-rootfs"

peer() {
  local out=$1
  rm -rf "$out" && mkdir -p "$out"
  debootstrap --variant=minbase --include=python3-minimal --cache-dir="$debcache" bookworm "$out/rootfs" "$mirror"
  # Device nodes and the apt lists are not image content.
  rm -rf "$out/rootfs/dev/"* "$out/rootfs/var/lib/apt/lists/"* "$out/rootfs/var/cache/apt/"*.bin
  local b=(buildah --root "$out/root" --runroot "$out/run" --storage-driver vfs)
  local c; c=$("${b[@]}" from scratch)
  tar -C "$out/rootfs" -cf "$out/rootfs.tar" .
  "${b[@]}" add "$c" "$out/rootfs.tar" /
  "${b[@]}" config --user 65532 --entrypoint '["/usr/bin/python3"]' "$c"
  "${b[@]}" commit --timestamp 0 -q "$c" debootstrap-python:1
  "${b[@]}" push -q debootstrap-python:1 "oci:$out/layout:img"
}
export -f peer
export debcache mirror

for i in $(seq "$runs"); do
  rm -rf "$work/kiln" "$spec/kiln.lock"
  measure kiln-lock-cold env KILN_HOME="$work/kiln" "$kiln" lock "$spec"
  env KILN_HOME="$work/kiln" "$kiln" build -q -t py:1 "$spec" >/dev/null 2>>"$BENCH_LOG"
  measure kiln-build-warm-debs env KILN_HOME="$work/kiln" "$kiln" build -q --no-cache -t py:1 "$spec"
  measure kiln-build-warm env KILN_HOME="$work/kiln" "$kiln" build -q -t py:1 "$spec"
  measure peer-build-warm bash -c "peer $work/peer"
done

# Compressed sizes: the amd64 manifest's layers.
layers_size() { jq '[.layers[].size] | add' "$1/blobs/sha256/$2"; }
kidx=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "py:1") | .digest' "$work/kiln/index.json" | cut -d: -f2)
kman=$(jq -r '.manifests[0].digest' "$work/kiln/blobs/sha256/$kidx" | cut -d: -f2)
k_size=$(layers_size "$work/kiln" "$kman")
pman=$(jq -r '.manifests[0].digest' "$work/peer/layout/index.json" | cut -d: -f2)
p_size=$(layers_size "$work/peer/layout" "$pman")
npk=$(grep -c '^name = ' "$spec/kiln.lock")
npeer=$(chroot "$work/peer/rootfs" dpkg-query -W 2>/dev/null | wc -l)

k_lock=$(median kiln-lock-cold 2); k_debs=$(median kiln-build-warm-debs 2); k_warm=$(median kiln-build-warm 2)
p_warm=$(median peer-build-warm 2)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == 0) print "n/a"; else printf "%.0fx", b / a }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "### python3-minimal image, Debian 12, amd64 ($(date -u +%F), $(machine), median of $runs)"
echo
echo "| tool | lock (cold) | build, warm .deb cache | build, fully warm | image (compressed) | packages |"
echo "|---|---|---|---|---|---|"
echo "| kiln $(git rev-parse --short HEAD) | ${k_lock} s | ${k_debs} s | ${k_warm} s | $(mib "$k_size") | $npk |"
echo "| debootstrap $(dpkg-query -W -f='${Version}' debootstrap) + buildah $(buildah --version | awk '{ print $3 }') | - | ${p_warm} s | - | $(mib "$p_size") | $npeer |"
echo
echo "kiln is faster by $(ratio "$k_debs" "$p_warm") (warm .deb cache) and $(ratio "$k_warm" "$p_warm") (fully warm); its image is $(awk -v a="$k_size" -v b="$p_size" 'BEGIN { printf "%.1fx", b / a }') smaller."
