#!/usr/bin/env bash
# Issue 13's benchmark: `kiln policy check` of a signed, attested image in Debian's
# docker-registry on loopback, against `kiln verify` of the same image (its peer: the one
# check a policy-less pipeline runs), and the cached decision.
#   image  = a 1,000-package dpkg database (a 1,000-package SBOM), built with
#            `kiln build --sign --key`: a signature, provenance, SPDX and CycloneDX
#            attestations (as .sig/.att layers and bundles), pushed;
#   policy = signatures by `release`, provenance with a source match and an SPDX attestation
#            by `release`, non_root and a label, one Rego rule (no vulnerability rule: that
#            reads every layer, as kiln scan does; bench/scan.sh measures it);
#   cold   = `kiln policy check --no-cache` of REPO@DIGEST from an empty store;
#   verify = `kiln verify --key` of docker://REPO@DIGEST from an empty store (the issue's
#            yardstick), and the three verifications that check what the policy checks
#            (signature, provenance, SPDX attestation), one after another;
#   cached = `kiln policy check` of REPO@DIGEST once its decision is cached (the whole
#            process: start, policy load with its key and Rego, cache lookup, output).
# Usage: bench/policy.sh [RUNS]   (prints a markdown table; needs scripts/setup first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
work=$(mktemp -d /var/tmp/kiln-bench-policy.XXXXXX)
reg_pid=""
trap '[ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; rm -rf "$work"' EXIT
# KILN_BIN: a release binary built elsewhere; default: build it.
kiln_binary
export DOCKER_CONFIG=$work/docker KILN_HOME=$work/store COSIGN_PASSWORD=bench
start_registry "$work" "$work/log"

# 1,000 packages in a dpkg database.
mkdir -p "$work/ctx/var/lib/dpkg"
for i in $(seq 1000); do
  printf 'Package: pkg%04d\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.%d-1\nMaintainer: Bench <bench@example.org>\n\n' "$i" "$i"
done > "$work/ctx/var/lib/dpkg/status"
printf 'FROM scratch\nCOPY var /var\nUSER 65532\nLABEL org.opencontainers.image.source=https://example.com/team/app\n' > "$work/ctx/Dockerfile"
"$kiln" generate-key-pair --output-key-prefix "$work/release" 2>/dev/null
name=$reg/prod/app:1
"$kiln" build -q -t "$name" --sign --key "$work/release.key" "$work/ctx" >/dev/null
"$kiln" push -q "$name" >/dev/null
digest=$("$kiln" inspect --format '{{.Digest}}' "$name")
pinned=$reg/prod/app@$digest
packages=$("$kiln" policy input "$pinned" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["sbom"]["packages"]))')

mkdir -p "$work/policies"
cat > "$work/policies/deny.rego" <<'REGO'
package kiln

deny contains msg if {
	some p in input.sbom.packages
	p.name == "telnetd"
	msg := "telnetd is not allowed"
}
REGO
cat > "$work/kiln-policy.yaml" <<'YAML'
version: 1
authorities:
  release: { key: release.pub }
rules:
  - name: production
    images: ["127.0.0.1:*/prod/**"]
    signatures: { by: [release] }
    attestations:
      - type: slsaprovenance
        by: [release]
        match:
          buildDefinition.externalParameters.source.path: "*/Dockerfile"
      - type: spdxjson
        by: [release]
    config:
      non_root: true
      required_labels: [org.opencontainers.image.source]
    rego: [policies/*.rego]
YAML
"$kiln" policy check --policy "$work/kiln-policy.yaml" "$pinned" >/dev/null

ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>>"$work/log"; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
: > "$work/results"
for i in $(seq "$runs"); do
  rm -rf "$work/empty"
  echo "cold $(KILN_HOME=$work/empty ms "$kiln" policy check --no-cache --policy "$work/kiln-policy.yaml" "$pinned")" >> "$work/results"
  rm -rf "$work/empty"
  echo "verify $(KILN_HOME=$work/empty ms "$kiln" verify --key "$work/release.pub" "docker://$pinned")" >> "$work/results"
  rm -rf "$work/empty"
  echo "vprov $(KILN_HOME=$work/empty ms "$kiln" verify-attestation --type slsaprovenance --key "$work/release.pub" "docker://$pinned")" >> "$work/results"
  rm -rf "$work/empty"
  echo "vspdx $(KILN_HOME=$work/empty ms "$kiln" verify-attestation --type spdxjson --key "$work/release.pub" "docker://$pinned")" >> "$work/results"
done
# Process-sized times are below what `date` around one run can resolve on a loaded machine:
# hyperfine runs each 60 times (after 5 warm-ups) and gives the median.
hf() { hyperfine -N --warmup 5 --runs 60 --export-json "$work/hf.json" "$*" >/dev/null 2>>"$work/log"
  python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["results"][0]["median"] * 1e6))' "$work/hf.json"; }
echo "cached $(hf "$kiln" policy check --policy "$work/kiln-policy.yaml" "$pinned")" >> "$work/results"
echo "version $(hf "$kiln" version)" >> "$work/results"
med() { awk -v l="$1" '$1 == l { print $2 }' "$work/results" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
cold=$(med cold); verify=$(med verify); cached=$(med cached); version=$(med version)
vprov=$(med vprov); vspdx=$(med vspdx); three=$(awk -v a="$verify" -v b="$vprov" -v c="$vspdx" 'BEGIN { print a + b + c }')
echo "### kiln policy check, loopback docker-registry $(dpkg-query -W -f='${Version}' docker-registry) ($(date -u +%F), $(machine), shared machine, median of $runs)"
echo
echo "| what | time |"
echo "|---|---|"
echo "| \`kiln verify --key\` (docker://, empty store) | $verify ms |"
echo "| \`kiln policy check --no-cache\` (empty store; $packages SBOM packages; signature, provenance and SPDX attestations; config; Rego) | $cold ms |"
echo "| \`kiln verify-attestation --type slsaprovenance\` | $vprov ms |"
echo "| \`kiln verify-attestation --type spdxjson\` (the 1,000-package SPDX) | $vspdx ms |"
echo "| the three verifications, one after another (what the policy checks) | $three ms |"
echo "| **cold check / the three verifications** | **$(awk -v a="$cold" -v b="$three" 'BEGIN { printf "%.2fx", a / b }')** |"
echo "| **cold check / verify** | **$(awk -v a="$cold" -v b="$verify" 'BEGIN { printf "%.2fx", a / b }')** |"
echo "| cached decision (whole process, hyperfine median of 60) | $(awk -v a="$cached" 'BEGIN { printf "%.1f", a / 1000 }') ms |"
echo "| \`kiln version\` (process start, for scale, hyperfine median of 60) | $(awk -v a="$version" 'BEGIN { printf "%.1f", a / 1000 }') ms |"
