#!/usr/bin/env bash
# Issue 16's zstd benchmark: one image in gzip (kiln's default) and in zstd (`kiln convert`),
# pushed to Debian's docker-registry on loopback; per compression, the blob bytes, and the
# time to pull it into an empty store and unpack it: with kiln (`kiln pull`, which checks
# every layer's diff_id while decompressing, then `kiln build` of `FROM image` + `RUN busybox true`,
# with --sbom=false, whose first step unpacks the layers into kiln's snapshots) and with skopeo + tar
# (`skopeo copy` into an OCI layout, then each layer through `gzip -dc` or `zstd -dc` into
# `tar -x`; Debian 12's umoci 0.4.7 refuses zstd layers: "blob is not correct mediatype").
# Same machine, same run.
# The content: copies of /usr/lib/python3, /usr/share/doc and the regular files of /usr/bin
# under 8 MiB (real binaries and text; a few hundred MiB, kept small for a shared disk), in
# three layers.
# Usage: bench/zstd.sh [RUNS]   (as root; prints a markdown table; needs scripts/setup first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
work=$(mktemp -d /var/tmp/kiln-bench-zstd.XXXXXX)
reg_pid=""
stop_registry() { if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; reg_pid=""; fi; }
trap 'stop_registry; rm -rf "$work"' EXIT
kiln_binary
export RESULTS=$work/results BENCH_LOG=$work/log DOCKER_CONFIG=$work/docker
: > "$RESULTS"

start_registry "$work" "$BENCH_LOG"

src=$work/src
mkdir -p "$work/ctx"
cp -a /usr/lib/python3 "$work/ctx/python3"
cp -a /usr/share/doc "$work/ctx/doc"
mkdir -p "$work/ctx/bin"
find /usr/bin -maxdepth 1 -type f -size -8M -exec cp -p -t "$work/ctx/bin/" {} +
printf 'FROM scratch\nCOPY python3 /usr/lib/python3\nCOPY doc /usr/share/doc\nCOPY bin /usr/bin\n' > "$work/ctx/Dockerfile"
KILN_HOME=$src "$kiln" build -q -t bench:gzip "$work/ctx" >/dev/null
rm -rf "$work/ctx"
for i in $(seq "$runs"); do
  measure convert-zstd env KILN_HOME="$src" "$kiln" convert --compression zstd bench:gzip -t bench:zstd
  measure convert-gzip env KILN_HOME="$src" "$kiln" convert --compression gzip bench:zstd -t bench:back
done
[ "$(KILN_HOME=$src "$kiln" inspect bench:back --format '{{.Digest}}')" = "$(KILN_HOME=$src "$kiln" inspect bench:gzip --format '{{.Digest}}')" ] \
  || { echo "round trip changed the digest" >&2; exit 1; }
bytes() { KILN_HOME=$src "$kiln" inspect "bench:$1" | jq '[.Manifest.layers // .manifest.layers | .[].size] | add'; }
tar_bytes=$(du -sb "$src/blobs" >/dev/null; KILN_HOME=$src "$kiln" convert --compression none bench:gzip -t bench:tar >/dev/null 2>&1; bytes tar)
for c in gzip zstd; do
  KILN_HOME=$src "$kiln" push -q "bench:$c" "$reg/b:$c" >/dev/null
  echo "bytes-$c $(bytes "$c") 0" >> "$RESULTS"
done
mkdir -p "$work/bctx"
# unpack LAYOUT DIR: every layer of the layout's one image, in order, decompressed by its media type.
unpack='set -eo pipefail; m=$(jq -r ".manifests[0].digest" "$1/index.json" | sed "s|:|/|"); mkdir -p "$2"
for l in $(jq -r ".layers[] | .mediaType + \"=\" + .digest" "$1/blobs/$m"); do
  b=$1/blobs/$(echo "${l#*=}" | sed "s|:|/|")
  case ${l%%=*} in *zstd) zstd -dcq "$b" ;; *gzip) gzip -dc "$b" ;; *) cat "$b" ;; esac | tar -x --numeric-owner -C "$2"
done'
for c in gzip zstd; do printf 'FROM %s\nRUN ["/usr/bin/busybox", "true"]\n' "$reg/b:$c" > "$work/bctx/Dockerfile.$c"; done
sync
for i in $(seq "$runs"); do
  for c in gzip zstd; do
    rm -rf "$work/k" && mkdir -p "$work/k"
    measure "kiln-pull-$c" env KILN_HOME="$work/k" "$kiln" pull -q "$reg/b:$c"
    measure "kiln-unpack-$c" env KILN_HOME="$work/k" "$kiln" build -q --sbom=false -f "$work/bctx/Dockerfile.$c" "$work/bctx"
    rm -rf "$work/l" "$work/rootfs"
    measure "skopeo-pull-$c" skopeo copy -q --src-tls-verify=false "docker://$reg/b:$c" "oci:$work/l:img"
    measure "tar-unpack-$c" bash -c "$unpack" _ "$work/l" "$work/rootfs"
  done
done
stop_registry

mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }
sum() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a") print "n/a"; else printf "%.2f", a + b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
gz=$(median bytes-gzip 2); zs=$(median bytes-zstd 2)
kg=$(sum "$(median kiln-pull-gzip 2)" "$(median kiln-unpack-gzip 2)"); kz=$(sum "$(median kiln-pull-zstd 2)" "$(median kiln-unpack-zstd 2)")
sg=$(sum "$(median skopeo-pull-gzip 2)" "$(median tar-unpack-gzip 2)"); sz=$(sum "$(median skopeo-pull-zstd 2)" "$(median tar-unpack-zstd 2)")
echo "### zstd vs gzip: $(mib "$tar_bytes") of /usr in 3 layers, loopback docker-registry ($(date -u +%F), $(machine), load average $(load), median of $runs)"
echo
echo "| | gzip (level 6) | zstd (level 3) | zstd / gzip |"
echo "|---|---|---|---|"
echo "| layer bytes | $(mib "$gz") | $(mib "$zs") | $(ratio "$zs" "$gz") |"
echo "| kiln pull | $(median kiln-pull-gzip 2) s | $(median kiln-pull-zstd 2) s | $(ratio "$(median kiln-pull-zstd 2)" "$(median kiln-pull-gzip 2)") |"
echo "| kiln unpack (first build step on the image) | $(median kiln-unpack-gzip 2) s | $(median kiln-unpack-zstd 2) s | $(ratio "$(median kiln-unpack-zstd 2)" "$(median kiln-unpack-gzip 2)") |"
echo "| kiln pull + unpack | $kg s | $kz s | $(ratio "$kz" "$kg") |"
echo "| skopeo copy | $(median skopeo-pull-gzip 2) s | $(median skopeo-pull-zstd 2) s | $(ratio "$(median skopeo-pull-zstd 2)" "$(median skopeo-pull-gzip 2)") |"
echo "| unpack with gzip -dc / zstd -dc into tar -x | $(median tar-unpack-gzip 2) s | $(median tar-unpack-zstd 2) s | $(ratio "$(median tar-unpack-zstd 2)" "$(median tar-unpack-gzip 2)") |"
echo "| skopeo copy + tar | $sg s | $sz s | $(ratio "$sz" "$sg") |"
echo "| kiln / (skopeo + tar) | $(ratio "$kg" "$sg") | $(ratio "$kz" "$sz") | |"
echo "| kiln convert (gzip to zstd / zstd to gzip) | | $(median convert-zstd 2) s / $(median convert-gzip 2) s | |"
