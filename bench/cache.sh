#!/usr/bin/env bash
# Issue 16's cache benchmark: a build cache shared through a loopback docker-registry.
# The first CI runner builds cold and exports its cache; a second runner, with an empty store
# (only the base image comes from the registry, like any FROM), builds the same Dockerfile
# with --cache-from. kiln: --cache-to type=registry,mode=max and type=inline; BuildKit:
# Debian's dockerd 20.10 with its built-in BuildKit (../shared/peers/buildkit), whose
# `docker build` imports only inline caches (`--cache-to type=registry` needs buildx, which
# Debian 12 lacks), so its column is BUILDKIT_INLINE_CACHE=1 + push, then --cache-from of
# that image, on the same registry, with the builder cache pruned and the images removed.
#
# The workload stands for a compile: COPY of 2,000 source files (8 MiB), a RUN that reads
# them all and burns about 2 s of CPU making /out, a RUN that packs /out, a COPY of config.
# Usage: bench/cache.sh [RUNS]   (as root; prints a markdown table; needs scripts/setup)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (RUN steps need root)" >&2; exit 2; }
peer=${BUILDKIT_PEER:-$(pwd)/../shared/peers/buildkit}
[ -x "$peer" ] || peer=/work/shared/peers/buildkit
work=$(mktemp -d /var/tmp/kiln-bench-cache.XXXXXX)
reg_pid=""
stop_registry() { if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; reg_pid=""; fi; }
trap 'stop_registry; rm -rf "$work"' EXIT
export RESULTS=$work/results BENCH_LOG=$work/log DOCKER_CONFIG=$work/docker
: > "$RESULTS"
mkdir -p "$DOCKER_CONFIG"

kiln_binary

fresh_registry() { stop_registry; start_registry "$work" "$BENCH_LOG"; }

# The base: busybox (Debian's busybox-static) on scratch, built once, pushed on every run.
base=$work/base
mkdir -p "$base/rootfs/bin" "$base/rootfs/tmp" "$base/rootfs/etc"
cp /bin/busybox "$base/rootfs/bin/busybox"
for t in sh cat mkdir sha256sum tar gzip seq cp find sort xargs head wc; do ln -sf busybox "$base/rootfs/bin/$t"; done
chmod 1777 "$base/rootfs/tmp"
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["sh"]\n' > "$base/Dockerfile"
KILN_HOME=$work/basestore "$kiln" build -q -t bench/base:1 "$base" >/dev/null

# The registry's address is fixed now (start_registry keeps $port), for the Dockerfile's FROM.
port=$(free_port); reg=127.0.0.1:$port
ctx=$work/ctx
mkdir -p "$ctx/src"
for i in $(seq 2000); do head -c 4096 /dev/urandom > "$ctx/src/f$i.c"; done
echo 'mode=release' > "$ctx/app.conf"
cat > "$ctx/Dockerfile" <<EOF
FROM $reg/bench/base:1
COPY src/ /src/
RUN mkdir /out && cat /src/*.c > /out/app && i=0 && while [ \$i -lt 400000 ]; do i=\$((i+1)); done && sha256sum /out/app > /out/app.sum
RUN tar -C /out -cf /out.tar . && gzip -9 /out.tar
COPY app.conf /etc/app.conf
EOF
sync

bk=n/a
if "$peer" start >&2; then bk=yes; fi
bkd() { "$peer" docker "$@"; }
bk_reset() { bkd builder prune -af >/dev/null 2>&1 || true; bkd image rm -f $(bkd images -q 2>/dev/null) >/dev/null 2>&1 || true; }

for i in $(seq "$runs"); do
  fresh_registry
  KILN_HOME=$work/basestore "$kiln" push -q bench/base:1 "$reg/bench/base:1" >/dev/null
  # kiln: first runner cold (no export), then cold with each export, then second runners.
  rm -rf "$work/k1"
  measure kiln-cold env KILN_HOME="$work/k1" "$kiln" build -q --sbom=false "$ctx"
  rm -rf "$work/k1"
  measure kiln-cold-export env KILN_HOME="$work/k1" "$kiln" build -q --sbom=false \
    --cache-to "type=registry,ref=$reg/bench/cache:main,mode=max" "$ctx"
  rm -rf "$work/k2"
  measure kiln-second env KILN_HOME="$work/k2" "$kiln" build -q --sbom=false \
    --cache-from "type=registry,ref=$reg/bench/cache:main" "$ctx"
  measure kiln-nochange env KILN_HOME="$work/k2" "$kiln" build -q --sbom=false \
    --cache-from "type=registry,ref=$reg/bench/cache:main" "$ctx"
  d1=$(KILN_HOME=$work/k1 "$kiln" build -q --sbom=false "$ctx"); d2=$(KILN_HOME=$work/k2 "$kiln" build -q --sbom=false "$ctx")
  [ "$d1" = "$d2" ] || { echo "digests differ: $d1 $d2" >&2; exit 1; }
  rm -rf "$work/k1" "$work/k3"
  KILN_HOME=$work/k1 "$kiln" build -q --sbom=false --cache-to type=inline -t "$reg/bench/app:kiln" --push "$ctx" >/dev/null
  measure kiln-second-inline env KILN_HOME="$work/k3" "$kiln" build -q --sbom=false \
    --cache-from "$reg/bench/app:kiln" --cache-to type=inline "$ctx"
  rm -rf "$work/k1" "$work/k2" "$work/k3"

  if [ "$bk" = yes ]; then
    bk_reset
    measure buildkit-cold "$peer" build -q --network host -t "$reg/bench/app:bk" "$ctx"
    bk_reset
    measure buildkit-cold-export "$peer" build -q --network host --build-arg BUILDKIT_INLINE_CACHE=1 -t "$reg/bench/app:bk" "$ctx"
    bkd push "$reg/bench/app:bk" >/dev/null
    bk_reset
    measure buildkit-second "$peer" build -q --network host --cache-from "$reg/bench/app:bk" -t "$reg/bench/app:bk2" "$ctx"
    measure buildkit-nochange "$peer" build -q --network host --cache-from "$reg/bench/app:bk" -t "$reg/bench/app:bk2" "$ctx"
    bk_reset
  fi
done

pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.0f%%", 100 * a / b }'; }
x() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
kc=$(median kiln-cold 2); ks=$(median kiln-second 2); bc=$(median buildkit-cold 2); bs=$(median buildkit-second 2)
kn=$(median kiln-nochange 2); bn=$(median buildkit-nochange 2)
echo "### Second CI runner with --cache-from, loopback docker-registry ($(date -u +%F), $(machine), load average $(cut -d' ' -f1-3 /proc/loadavg), median of $runs)"
echo
echo "| tool | first runner, cold | cold + cache export | second runner, empty store, --cache-from | second / cold | no-change rebuild |"
echo "|---|---|---|---|---|---|"
echo "| kiln $rev, type=registry,mode=max | ${kc} s | $(median kiln-cold-export 2) s | ${ks} s | $(pct "$ks" "$kc") | ${kn} s |"
echo "| kiln $rev, type=inline | ${kc} s | | $(median kiln-second-inline 2) s | $(pct "$(median kiln-second-inline 2)" "$kc") | |"
if [ "$bk" = yes ]; then
  echo "| BuildKit (dockerd $(bkd version -f '{{.Server.Version}}' 2>/dev/null), inline cache) | ${bc} s | $(median buildkit-cold-export 2) s | ${bs} s | $(pct "$bs" "$bc") | ${bn} s |"
  echo
  echo "kiln's second runner vs BuildKit's: $(x "$ks" "$bs") (target ≤ 0.5x); no-change rebuild: $(x "$kn" "$bn") (target ≤ 0.2x)."
else
  echo "| BuildKit | not run: ../shared/peers/buildkit start failed | | | | |"
fi
