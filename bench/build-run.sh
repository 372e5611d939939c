#!/usr/bin/env bash
# Issue 3's benchmark: RUN steps on a Debian bookworm base, kiln against buildah (runc,
# --layers, overlay storage, --timestamp 0) and BuildKit (Debian's dockerd 20.10 through
# ../shared/peers/buildkit, --network host; the base `docker import`ed from the same rootfs;
# cold = its build cache pruned and the image removed). Same machine, same run.
#   (b) RUN mkdir /app && echo hi > /app/x && useradd -r app
#   (d) two stages, a RUN in each, and COPY --from
# Cold build (the base image present, no build cache) and no-change rebuild, then kiln's
# overhead per RUN step: (10 × `RUN true`) minus (no RUN), divided by 10, cold.
# The Debian base is made once with debootstrap (needs the network the first time) and
# cached in $BENCH_DEBIAN (default /var/tmp/kiln-bench-debian).
# Usage: bench/build-run.sh [RUNS]   (as root; prints a markdown table; needs scripts/setup)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (RUN steps need root until rootless lands)" >&2; exit 2; }
work=$(mktemp -d /var/tmp/kiln-bench-run.XXXXXX)
cleanup() {
  for r in "$work"/buildah-*; do
    [ -d "$r" ] && buildah --root "$r/root" --runroot "$r/run" --storage-driver overlay rm -a >/dev/null 2>&1 || true
    [ -d "$r" ] && buildah --root "$r/root" --runroot "$r/run" --storage-driver overlay rmi -a -f >/dev/null 2>&1 || true
    umount -R "$r/root/overlay" 2>/dev/null || true
  done
  [ "${bk:-no}" = yes ] && bk_reset kiln-bench:1 localhost/debian:bookworm
  rm -rf "$work"
}
trap cleanup EXIT

# The Debian base context: debootstrap minbase, FROM scratch + COPY rootfs/ /.
deb=${BENCH_DEBIAN:-/var/tmp/kiln-bench-debian}
if [ ! -x "$deb/rootfs/bin/bash" ]; then
  echo "making the Debian base in $deb (debootstrap, needs the network once)" >&2
  rm -rf "$deb.tmp" && mkdir -p "$deb.tmp"
  debootstrap --variant=minbase bookworm "$deb.tmp/rootfs" http://deb.debian.org/debian >&2
  rm -rf "$deb" && mv "$deb.tmp" "$deb"
fi
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["bash"]\n' > "$deb/Dockerfile"
printf 'rootfs/dev/*\nrootfs/proc/*\nrootfs/sys/*\n' > "$deb/.dockerignore"

kiln_binary
export RESULTS=$work/results BENCH_LOG=$work/log
: > "$RESULTS"

# Build contexts.
mkdir -p "$work/b" "$work/d" "$work/run0" "$work/run10" "$work/warm"
cat > "$work/b/Dockerfile" <<'EOF'
FROM localhost/debian:bookworm
RUN mkdir /app && echo hi > /app/x && useradd -r app
EOF
cat > "$work/d/Dockerfile" <<'EOF'
FROM localhost/debian:bookworm AS build
RUN mkdir /out && echo built > /out/artifact && useradd -r builder && chown builder /out/artifact

FROM localhost/debian:bookworm
COPY --from=build /out/artifact /app/artifact
RUN useradd -r app && chown app /app/artifact
EOF
printf 'FROM localhost/debian:bookworm\nLABEL bench=run0\n' > "$work/run0/Dockerfile"
{ printf 'FROM localhost/debian:bookworm\nLABEL bench=run10\n'; for i in $(seq 10); do echo "RUN true # $i"; done; } > "$work/run10/Dockerfile"
printf 'FROM localhost/debian:bookworm\nRUN echo warm > /warm\n' > "$work/warm/Dockerfile"

# Seeds: a kiln store with the base imported and its snapshot unpacked (as a pulled image
# is), and the same image copied into a buildah storage; each cold build starts from a copy.
seed=$work/seed-kiln
KILN_HOME=$seed "$kiln" build -q -t localhost/debian:bookworm "$deb" >/dev/null
KILN_HOME=$seed "$kiln" build -q -t warm "$work/warm" >/dev/null
KILN_HOME=$seed "$kiln" rmi warm >/dev/null 2>&1 || true
fresh_kiln() { rm -rf "$work/kiln"; cp -a "$seed" "$work/kiln"; sync; }
b_seed() {
  local r=$work/buildah-$1
  skopeo copy -q "oci:$seed:localhost/debian:bookworm" "containers-storage:[overlay@$r/root+$r/run]localhost/debian:bookworm" >&2
  sync
}
mkdir -p "$work/bundle"
runc spec --bundle "$work/bundle"
jq --arg root "$deb/rootfs" '.process.terminal = false | .process.args = ["true"] | .root.path = $root | .root.readonly = true' \
  "$work/bundle/config.json" > "$work/bundle/config.tmp" && mv "$work/bundle/config.tmp" "$work/bundle/config.json"
bk_start
if [ "$bk" = yes ]; then
  tar -C "$deb/rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
    | bkd import -c 'CMD ["bash"]' - localhost/debian:bookworm >/dev/null
fi
sync

for i in $(seq "$runs"); do
  for c in b d; do
    fresh_kiln
    measure "kiln-$c-cold" env KILN_HOME="$work/kiln" "$kiln" build -q -t bench:1 "$work/$c"
    measure "kiln-$c-rebuild" env KILN_HOME="$work/kiln" "$kiln" build -q -t bench:1 "$work/$c"

    b_seed "$c-$i"
    r=$work/buildah-$c-$i
    bh=(buildah --root "$r/root" --runroot "$r/run" --storage-driver overlay)
    measure "buildah-$c-cold" "${bh[@]}" bud --runtime runc --timestamp 0 --layers -q -t bench:1 "$work/$c"
    measure "buildah-$c-rebuild" "${bh[@]}" bud --runtime runc --timestamp 0 --layers -q -t bench:1 "$work/$c"

    if [ "$bk" = yes ]; then
      bk_reset kiln-bench:1
      measure "buildkit-$c-cold" "$peer" build -q --network host -t kiln-bench:1 "$work/$c"
      measure "buildkit-$c-rebuild" "$peer" build -q --network host -t kiln-bench:1 "$work/$c"
      bk_reset kiln-bench:1
    fi
  done
  for c in run0 run10; do
    fresh_kiln
    measure "kiln-$c" env KILN_HOME="$work/kiln" "$kiln" build -q -t bench:1 "$work/$c"
  done
  # The floor: runc alone running `true` 10 times in a read-only bundle of the same rootfs.
  measure runc-10 bash -c 'for i in $(seq 10); do runc --root "$1/runc-state" run --bundle "$1/bundle" "b$i" </dev/null || exit 1; done' _ "$work"
done

m() { median "$1" 2; }
echo "### RUN on a Debian bookworm base ($(date -u +%F), $(machine), load average $(load), median of $runs)"
echo
echo "| build | tool | cold build | no-change rebuild | peak memory (cold) | kiln / tool (cold / rebuild) |"
echo "|---|---|---|---|---|---|"
notes=""
for c in b d; do
  case $c in
    b) what='(b) `RUN mkdir /app && echo hi > /app/x && useradd -r app`' ;;
    d) what='(d) two stages, a RUN in each, `COPY --from`' ;;
  esac
  kc=$(m "kiln-$c-cold"); kr=$(m "kiln-$c-rebuild")
  bc=$(m "buildah-$c-cold"); br=$(m "buildah-$c-rebuild")
  echo "| $what | kiln ${rev} ($(command -v crun >/dev/null && echo crun || echo runc)) | ${kc} s | ${kr} s | $(( $(median "kiln-$c-cold" 3) / 1024 )) MiB | - |"
  echo "| | buildah $(buildah --version | awk '{ print $3 }') (runc, overlay, --layers, --timestamp 0) | ${bc} s | ${br} s | $(( $(median "buildah-$c-cold" 3) / 1024 )) MiB | $(x "$kc" "$bc") / $(x "$kr" "$br") |"
  if grep -q "buildkit-$c-cold" "$RESULTS"; then
    kc_bk=$(m "buildkit-$c-cold"); kr_bk=$(m "buildkit-$c-rebuild")
    echo "| | BuildKit (dockerd $(bk_version), --network host) | ${kc_bk} s | ${kr_bk} s | (daemon) | $(x "$kc" "$kc_bk") / $(x "$kr" "$kr_bk") |"
    notes="$notes (${c}): $(x "$kr" "$kr_bk"), target ≤ 0.2x $(target "$kr" "$kr_bk" 0.2);"
  else
    echo "| | BuildKit | not run: ../shared/peers/buildkit start failed | | | |"
  fi
done
r0=$(m kiln-run0); r10=$(m kiln-run10)
echo
[ -z "$notes" ] || { echo "No-change rebuild, kiln / BuildKit:${notes%;}."; echo; }
echo "kiln's overhead per RUN step: (${r10} s for 10 × \`RUN true\` − ${r0} s for none) / 10 = $(awk -v a="$r10" -v b="$r0" 'BEGIN { printf "%.0f ms", (a - b) * 100 }'),"
echo "of which runc itself takes $(awk -v a="$(m runc-10)" 'BEGIN { printf "%.0f ms", a * 100 }') (\`runc run\` of \`true\` alone, 10 times); load average at the end: $(load)"
