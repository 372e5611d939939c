#!/usr/bin/env bash
# Issue 6's benchmark: `kiln sbom` against syft on the same images (OCI layouts), same run.
# Images:
#  - debootstrap: Debian 12 --variant=minbase from the real mirror, COPY'd into FROM scratch
#    (set BENCH_ROOTFS=DIR to reuse a rootfs; needs network and root the first time);
#  - mixed: this machine's dpkg database (hundreds of packages) plus a Python venv,
#    node_modules, a Go binary, a cargo-auditable binary and a jar (every cataloger), as
#    tests/tests/sbom.rs builds it.
# Both tools write SPDX JSON to a file; recall compares (name, version) sets.
# Usage: bench/sbom.sh [RUNS]   (prints a markdown table; needs scripts/setup first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
work=$(mktemp -d /var/tmp/kiln-bench-sbom.XXXXXX)
trap 'rm -rf "$work"' EXIT
# KILN_BIN: a release kiln built beforehand (default: build one now).
kiln_binary
syft=$(pwd)/.venv/bin/syft
export RESULTS=$work/results BENCH_LOG=$work/log KILN_HOME=$work/store SOURCE_DATE_EPOCH=0
: > "$RESULTS"

# debootstrap image
rootfs=${BENCH_ROOTFS:-/var/tmp/kiln-bench-debootstrap}
if [ ! -f "$rootfs/var/lib/dpkg/status" ]; then
  debootstrap --variant=minbase bookworm "$rootfs" >&2
fi
mkdir -p "$work/deb"
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$work/deb/Dockerfile"
cp -a "$rootfs" "$work/deb/rootfs"
"$kiln" build -q --sbom=false -t deb:1 --output "type=oci,dest=$work/deb-oci,tar=false" "$work/deb" >/dev/null

# mixed image: reuse the test's fixture recipe through the test binary would be heavier;
# build the same shape here.
m=$work/mixed
mkdir -p "$m/etc" "$m/var/lib/dpkg/info" "$m/app/bin" "$m/app/lib"
cp /etc/os-release "$m/etc/"; cp /var/lib/dpkg/status "$m/var/lib/dpkg/"; cp /var/lib/dpkg/info/*.list "$m/var/lib/dpkg/info/"
for i in $(seq 1 200); do
  d=$m/opt/venv/lib/python3.11/site-packages/pkg$i-1.$i.dist-info; mkdir -p "$d"
  printf 'Metadata-Version: 2.1\nName: pkg%s\nVersion: 1.%s\nLicense: MIT\n' "$i" "$i" > "$d/METADATA"
  n=$m/app/node_modules/mod$i; mkdir -p "$n"
  printf '{"name":"mod%s","version":"2.%s.0","license":"ISC"}' "$i" "$i" > "$n/package.json"
done
# The Go binaries this machine has (skopeo, buildah, containerd…: Debian builds them
# outside module mode) and Go's own tools; dpkg-owned copies elsewhere in an image would be
# the same bytes, so /usr/bin's other binaries are left out (syft's binary classifiers
# report those only when no package owns them, which would not happen in a real image).
for b in /usr/bin/* /usr/lib/go-*/bin/* /usr/lib/go-*/pkg/tool/*/*; do
  [ -f "$b" ] && go version "$b" >/dev/null 2>&1 && cp "$b" "$m/app/bin/$(basename "$b")-$(echo "$b" | md5sum | cut -c1-6)" || true
done
find /usr/share/java -name '*.jar' -size -20M -exec cp {} "$m/app/lib/" \; 2>/dev/null || true
printf 'FROM scratch\nCOPY . /\n' > "$m/Dockerfile"
"$kiln" build -q --sbom=false -t mixed:1 --output "type=oci,dest=$work/mixed-oci,tar=false" "$m" >/dev/null

sync
for img in deb mixed; do
  for i in $(seq "$runs"); do
    measure "kiln-$img" "$kiln" sbom "oci:$work/$img-oci" -o spdx-json --file "$work/$img.kiln.json"
    measure "syft-$img" "$syft" scan "oci-dir:$work/$img-oci" -o "spdx-json=$work/$img.syft.json" -q
  done
done

pkgs() { jq -r '.packages[] | select(.SPDXID != "SPDXRef-Image" and .SPDXID != "SPDXRef-OperatingSystem" and (.primaryPackagePurpose // "") != "CONTAINER" and (.primaryPackagePurpose // "") != "OPERATING-SYSTEM" and ((.sourceInfo // "") | startswith("acquired package info from the following paths: /") or true)) | "\(.name) \(.versionInfo)"' "$1" | sort -u; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == 0) print "n/a"; else printf "%.1fx", b / a }'; }
echo "### kiln sbom vs syft ($(date -u +%F), $(machine), median of $runs)"
echo
echo "| image | packages (syft / kiln) | syft found, kiln missed | kiln time | syft time | kiln faster by | kiln peak memory | syft peak memory | memory ratio |"
echo "|---|---|---|---|---|---|---|---|---|"
for img in deb mixed; do
  pkgs "$work/$img.kiln.json" > "$work/$img.k"
  # syft's document also lists the image and file-less entries; keep its packages with a version.
  jq -r '.packages[] | select(.versionInfo != null and (.primaryPackagePurpose // "") != "CONTAINER") | "\(.name) \(.versionInfo)"' "$work/$img.syft.json" | grep -v "^$work" | sort -u > "$work/$img.s"
  missed=$(comm -23 "$work/$img.s" "$work/$img.k" | wc -l)
  kt=$(median "kiln-$img" 2); st=$(median "syft-$img" 2)
  km=$(median "kiln-$img" 3); sm=$(median "syft-$img" 3)
  echo "| $img | $(wc -l < "$work/$img.s") / $(wc -l < "$work/$img.k") | $missed | ${kt} s | ${st} s | $(ratio "$kt" "$st") | $((km / 1024)) MiB | $((sm / 1024)) MiB | $(ratio "$km" "$sm") |"
  if [ "$missed" -gt 0 ]; then comm -23 "$work/$img.s" "$work/$img.k" | head -20 | sed 's/^/    missed: /' >&2; fi
done
echo
echo "syft $("$syft" version 2>/dev/null | awk '/^Version/ { print $2 }'), kiln $(git rev-parse --short HEAD); images: deb $(du -sh "$work/deb-oci" | cut -f1), mixed $(du -sh "$work/mixed-oci" | cut -f1) (gzip layers)"
