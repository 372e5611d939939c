#!/usr/bin/env bash
# Issue 7's benchmark: sign + attest (SBOM and provenance) + push of the signatures for a
# built image, and verification, against Debian's docker-registry on loopback (no referrers
# API, so every referrer goes through the sha256-<hex> tag schema).
#   sign+attest = `kiln build --sign --key cosign.key` minus the same fully cached build
#                 without --sign (both catalogue the SBOM and write the provenance);
#   push        = `kiln push` of the signed image whose blobs the registry already has, so
#                 it is the signatures, attestations, bundles, SBOMs and provenance;
#   verify      = `kiln verify` / `kiln verify-attestation --type slsaprovenance` of the
#                 registry image (docker://), from an empty store.
# Each run uses a new repository, so nothing is already there.
# Usage: bench/sign.sh [RUNS]   (prints a markdown table; needs scripts/setup first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
work=$(mktemp -d /var/tmp/kiln-bench-sign.XXXXXX)
reg_pid=""
trap '[ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; rm -rf "$work"' EXIT
# KILN_BIN: a release binary built elsewhere (e.g. from a clean checkout); default: build it.
kiln_binary
export DOCKER_CONFIG=$work/docker KILN_HOME=$work/store COSIGN_PASSWORD=bench
start_registry "$work" "$work/log"

# The image: this machine's dpkg database (a realistic SBOM: every installed package) and
# a few files.
mkdir -p "$work/ctx/var/lib/dpkg"
cp /var/lib/dpkg/status "$work/ctx/var/lib/dpkg/status"
head -c 4M /dev/urandom > "$work/ctx/data.bin"
printf 'FROM scratch\nCOPY var /var\nCOPY data.bin /data.bin\nCOPY run.txt /run.txt\n' > "$work/ctx/Dockerfile"
"$kiln" generate-key-pair --output-key-prefix "$work/cosign" 2>/dev/null
echo init > "$work/ctx/run.txt"
"$kiln" build -q -t bench:1 "$work/ctx" >/dev/null

ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>>"$work/log"; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/plain.pem" 2>/dev/null
: > "$work/results"
# variant LABEL KEY RUN: a new image (new digest, so nothing of earlier runs is attached to
# it), built once uncached, then timed fully cached without and with --sign.
variant() {
  local label=$1 key=$2 i=$3 name=$reg/$1-$3:1
  echo "$label $i" > "$work/ctx/run.txt"
  "$kiln" build -q -t "bench:$label$i" "$work/ctx" >/dev/null
  local plain signed push verify vatt
  plain=$(ms "$kiln" build -q -t "bench:$label$i" -t "$name" "$work/ctx")
  "$kiln" copy --remove-signatures "bench:$label$i" "docker://$name" >/dev/null 2>>"$work/log"
  signed=$(ms "$kiln" build -q -t "$name" --sign --key "$key" "$work/ctx")
  push=$(ms "$kiln" push -q "$name")
  verify=$(KILN_HOME=$work/empty ms "$kiln" verify --key "$work/cosign.pub" "docker://$name")
  vatt=$(KILN_HOME=$work/empty ms "$kiln" verify-attestation --key "$work/cosign.pub" --type slsaprovenance "docker://$name")
  echo "$label-sign $((signed - plain))" >> "$work/results"
  echo "$label-push $push" >> "$work/results"
  echo "$label-total $((signed - plain + push))" >> "$work/results"
  if [ "$label" = cosign ]; then
    echo "verify $verify" >> "$work/results"
    echo "vatt $vatt" >> "$work/results"
  fi
}
for i in $(seq "$runs"); do
  variant cosign "$work/cosign.key" "$i"
  variant pem "$work/plain.pem" "$i"
done
med() { awk -v l="$1" '$1 == l { print $2 }' "$work/results" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "### sign + attest + push, loopback docker-registry $(dpkg-query -W -f='${Version}' docker-registry) ($(date -u +%F), $(machine), median of $runs)"
echo
echo "| step | cosign.key (scrypt unlock) | plain PKCS#8 PEM key |"
echo "|---|---|---|"
echo "| sign + attest: \`build --sign\` minus the same cached build (image signature + provenance, SPDX, CycloneDX attestations, each as .sig/.att layer and bundle) | $(med cosign-sign) ms | $(med pem-sign) ms |"
echo "| push of what is kept beside the image (2 SBOMs, provenance, 4 bundles, .sig, .att; image already there) | $(med cosign-push) ms | $(med pem-push) ms |"
echo "| **sign + attest + push** | **$(med cosign-total) ms** | **$(med pem-total) ms** |"
echo "| verify (docker://, empty store) | $(med verify) ms | |"
echo "| verify-attestation --type slsaprovenance | $(med vatt) ms | |"
