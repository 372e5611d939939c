#!/usr/bin/env bash
# Issue 5's benchmark: push and pull of a 1 GiB image of 8 layers (128 MiB each, gzip) to and
# from Debian's docker-registry on loopback, and a push when every blob is already there;
# kiln against `skopeo copy`, same machine, same run, each push into a freshly emptied
# registry so neither tool can skip or mount anything.
# Usage: bench/registry.sh [RUNS]   (prints a markdown table; needs scripts/setup first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
work=$(mktemp -d /var/tmp/kiln-bench-reg.XXXXXX)
reg_pid=""
stop_registry() { if [ -n "$reg_pid" ]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; reg_pid=""; fi; }
trap 'stop_registry; rm -rf "$work"' EXIT
cargo build --release -q -p kiln
kiln=$(pwd)/target/release/kiln
export RESULTS=$work/results BENCH_LOG=$work/log DOCKER_CONFIG=$work/docker
: > "$RESULTS"

port=$(free_port)
reg=127.0.0.1:$port
# A registry with empty storage on every call.
fresh_registry() { stop_registry; start_registry "$work" "$BENCH_LOG"; }

# The image: 8 COPY layers of 128 MiB of random data each, built by kiln into a store that
# is an OCI layout, so skopeo reads exactly the same blobs (oci:STORE:bench:1).
src=$work/src
mkdir -p "$work/ctx"
for i in 1 2 3 4 5 6 7 8; do head -c 128M /dev/urandom > "$work/ctx/f$i"; done
{ echo "FROM scratch"; for i in 1 2 3 4 5 6 7 8; do echo "COPY f$i /f$i"; done; } > "$work/ctx/Dockerfile"
KILN_HOME=$src "$kiln" build -q -t bench:1 "$work/ctx" >/dev/null
rm -rf "$work/ctx"
sync

for i in $(seq "$runs"); do
  fresh_registry
  measure kiln-push env KILN_HOME="$src" "$kiln" push -q bench:1 "$reg/k:1"
  measure kiln-nochange env KILN_HOME="$src" "$kiln" push -q bench:1 "$reg/k:1"
  rm -rf "$work/kpull"
  measure kiln-pull env KILN_HOME="$work/kpull" "$kiln" pull -q "$reg/k:1"

  fresh_registry
  measure skopeo-push skopeo copy -q --dest-tls-verify=false "oci:$src:bench:1" "docker://$reg/s:1"
  measure skopeo-nochange skopeo copy -q --dest-tls-verify=false "oci:$src:bench:1" "docker://$reg/s:1"
  rm -rf "$work/spull"
  measure skopeo-pull skopeo copy -q --src-tls-verify=false "docker://$reg/s:1" "oci:$work/spull:s"
done
stop_registry

gib_s() { awk -v t="$1" 'BEGIN { if (t == "n/a" || t == 0) print "n/a"; else printf "%.2f GiB/s", 1 / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || a == 0) print "n/a"; else printf "%.1fx", b / a }'; }
kp=$(median kiln-push 2); kn=$(median kiln-nochange 2); kl=$(median kiln-pull 2)
sp=$(median skopeo-push 2); sn=$(median skopeo-nochange 2); sl=$(median skopeo-pull 2)
echo "### 1 GiB image, 8 layers of 128 MiB, loopback docker-registry $(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null || echo '?') ($(date -u +%F), $(machine), median of $runs)"
echo
echo "| tool | push | pull | push, every blob present | peak memory (push / pull) |"
echo "|---|---|---|---|---|"
echo "| kiln $(git rev-parse --short HEAD) | ${kp} s ($(gib_s "$kp")) | ${kl} s ($(gib_s "$kl")) | ${kn} s | $(( $(median kiln-push 3) / 1024 )) / $(( $(median kiln-pull 3) / 1024 )) MiB |"
echo "| skopeo $(skopeo --version | awk '{ print $3 }') | ${sp} s ($(gib_s "$sp")) | ${sl} s ($(gib_s "$sl")) | ${sn} s | $(( $(median skopeo-push 3) / 1024 )) / $(( $(median skopeo-pull 3) / 1024 )) MiB |"
echo "| kiln is faster by | $(ratio "$kp" "$sp") | $(ratio "$kl" "$sl") | $(ratio "$kn" "$sn") | |"
