#!/usr/bin/env bash
# Issue 16's multi-platform benchmark, kiln against BuildKit (Debian's dockerd 20.10 through
# ../shared/peers/buildkit). Same machine, same run, same inputs.
#  (1) A two-platform build (linux/amd64 and linux/arm64) of a small C program, cross-compiled
#      in a `FROM --platform=$BUILDPLATFORM` stage (gcc, or aarch64-linux-gnu-gcc, static), the
#      binary copied into FROM scratch: nothing of arm64 runs. kiln: one
#      `--platform linux/amd64,linux/arm64` build writing one index. dockerd 20.10's BuildKit
#      cannot export several platforms in one build (its CLI refuses the list; that needs
#      buildx), so its column is the two one-platform builds started together (its best case,
#      as buildx would solve both at once). Cold (base present, no build cache) and no-change
#      rebuild.
#  (2) An emulated RUN step: Debian's arm64 busybox-static (a kiln.toml image fetched by
#      kiln's own Debian client) runs a shell loop under qemu-aarch64 (binfmt_misc; kiln
#      registers Debian's handler when it is missing), and the same step on amd64 natively.
# The builder base is made once with debootstrap (gcc, gcc-aarch64-linux-gnu, needs the
# network the first time) and cached in $BENCH_CC (default /var/tmp/kiln-bench-cc, ~0.5 GiB).
# Usage: bench/platforms.sh [RUNS]   (as root; prints markdown tables; needs scripts/setup)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (RUN steps need root)" >&2; exit 2; }
[ -x /usr/bin/qemu-aarch64-static ] || { echo "error: qemu-user-static is missing (scripts/setup)" >&2; exit 2; }
work=$(mktemp -d /var/tmp/kiln-bench-platforms.XXXXXX)
imgs=(kiln-bench:amd64 kiln-bench:arm64 kiln-bench:emu kiln-bench:native localhost/cc:bookworm localhost/busybox-deb:amd64 localhost/busybox-deb:arm64)
cleanup() { [ "${bk:-no}" = yes ] && bk_reset "${imgs[@]}"; rm -rf "$work"; }
trap cleanup EXIT

cc=${BENCH_CC:-/var/tmp/kiln-bench-cc}
if [ ! -x "$cc/rootfs/usr/bin/aarch64-linux-gnu-gcc" ]; then
  echo "making the builder base in $cc (debootstrap, needs the network once)" >&2
  rm -rf "$cc.tmp" && mkdir -p "$cc.tmp"
  debootstrap --variant=minbase --include=gcc,libc6-dev,gcc-aarch64-linux-gnu,libc6-dev-arm64-cross \
    bookworm "$cc.tmp/rootfs" http://deb.debian.org/debian >&2
  rm -rf "$cc.tmp/rootfs/var/cache/apt/archives/"*.deb "$cc.tmp/rootfs/var/lib/apt/lists/"*
  rm -rf "$cc" && mv "$cc.tmp" "$cc"
fi
printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["bash"]\n' > "$cc/Dockerfile"
printf 'rootfs/dev/*\nrootfs/proc/*\nrootfs/sys/*\n' > "$cc/.dockerignore"

kiln_binary
export RESULTS=$work/results BENCH_LOG=$work/log
: > "$RESULTS"

# (1) The program and its Dockerfile.
mkdir -p "$work/x"
cat > "$work/x/hello.c" <<'EOF'
#include <stdio.h>
#include <string.h>
static unsigned long fib(unsigned n) { unsigned long a = 0, b = 1; while (n--) { unsigned long t = a + b; a = b; b = t; } return a; }
static void reverse(char *s) { size_t n = strlen(s); for (size_t i = 0; i < n / 2; i++) { char t = s[i]; s[i] = s[n - 1 - i]; s[n - 1 - i] = t; } }
int main(int argc, char **argv) {
  char buf[64] = "kiln";
  if (argc > 1) { strncpy(buf, argv[1], sizeof buf - 1); }
  reverse(buf);
  printf("%s %lu\n", buf, fib(50));
  return 0;
}
EOF
cat > "$work/x/Dockerfile" <<'EOF'
FROM --platform=$BUILDPLATFORM localhost/cc:bookworm AS build
ARG TARGETARCH
COPY hello.c /src/hello.c
RUN case "$TARGETARCH" in amd64) cc=gcc ;; arm64) cc=aarch64-linux-gnu-gcc ;; *) exit 1 ;; esac \
 && mkdir /out && $cc -O2 -static -o /out/hello /src/hello.c

FROM scratch
COPY --from=build /out/hello /hello
ENTRYPOINT ["/hello"]
EOF

# (2) The busybox base for both architectures, from Debian through kiln.toml, and the step.
mkdir -p "$work/bb" "$work/emu"
printf 'architectures = ["amd64", "arm64"]\npackages = ["busybox-static"]\n\n[[source]]\nurl = "http://deb.debian.org/debian"\nsuites = ["bookworm"]\n' > "$work/bb/kiln.toml"
cat > "$work/emu/Dockerfile" <<'EOF'
FROM localhost/busybox-deb:1
USER 0
RUN ["/bin/busybox", "sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; /bin/busybox sha256sum /bin/busybox > /sum; /bin/busybox uname -m > /arch"]
EOF

# Seeds: a kiln store with both bases (the builder's snapshot unpacked, as a pulled image's
# is); each cold build starts from a copy. The same images are loaded into dockerd.
seed=$work/seed-kiln
KILN_HOME=$seed "$kiln" build -q -t localhost/cc:bookworm "$cc" >/dev/null
KILN_HOME=$seed "$kiln" build -q -t localhost/busybox-deb:1 "$work/bb" >/dev/null
KILN_HOME=$seed "$kiln" tag localhost/busybox-deb:1 busybox-deb:1
printf 'FROM localhost/cc:bookworm\nRUN echo warm > /warm\n' > "$work/warm.Dockerfile"
KILN_HOME=$seed "$kiln" build -q -f "$work/warm.Dockerfile" -t warm "$work/x" >/dev/null
KILN_HOME=$seed "$kiln" rmi warm >/dev/null 2>&1 || true
fresh_kiln() { rm -rf "$work/kiln"; cp -a "$seed" "$work/kiln"; sync; }

bk_start
if [ "$bk" = yes ]; then
  tar -C "$cc/rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
    | bkd import -c 'CMD ["bash"]' - localhost/cc:bookworm >/dev/null
  for a in amd64 arm64; do
    KILN_HOME=$seed "$kiln" copy --progress quiet --platform "linux/$a" busybox-deb:1 "docker-archive:$work/bb-$a.tar" >/dev/null
    loaded=$(bkd load -i "$work/bb-$a.tar" | sed -n 's/^Loaded image[^:]*: //p' | tail -1)
    rm -f "$work/bb-$a.tar"
    bkd tag "$loaded" "localhost/busybox-deb:$a"
  done
fi
# BuildKit's two one-platform builds, started together (tag per platform).
bk_two() {
  "$peer" build -q --network host --platform linux/amd64 -t kiln-bench:amd64 "$work/x" >/dev/null & local p1=$!
  "$peer" build -q --network host --platform linux/arm64 -t kiln-bench:arm64 "$work/x" >/dev/null & local p2=$!
  wait "$p1" && wait "$p2"
}
# bk_emu ARCH: the emulated (or native) step on dockerd, its base the busybox of ARCH.
bk_emu() {
  sed "s|localhost/busybox-deb:1|localhost/busybox-deb:$1|" "$work/emu/Dockerfile" > "$work/emu/Dockerfile.$1"
  "$peer" build -q --network host --platform "linux/$1" -f "$work/emu/Dockerfile.$1" -t "kiln-bench:$1" "$work/emu"
}
export -f bk_two bk_emu
export peer work
sync

for i in $(seq "$runs"); do
  fresh_kiln
  measure kiln-x-cold env KILN_HOME="$work/kiln" "$kiln" build -q --platform linux/amd64,linux/arm64 -t app:multi "$work/x"
  measure kiln-x-rebuild env KILN_HOME="$work/kiln" "$kiln" build -q --platform linux/amd64,linux/arm64 -t app:multi "$work/x"
  measure kiln-emu-arm64 env KILN_HOME="$work/kiln" "$kiln" build -q --platform linux/arm64 -t app:emu "$work/emu"
  measure kiln-emu-arm64-rebuild env KILN_HOME="$work/kiln" "$kiln" build -q --platform linux/arm64 -t app:emu "$work/emu"
  measure kiln-emu-amd64 env KILN_HOME="$work/kiln" "$kiln" build -q --platform linux/amd64 -t app:native "$work/emu"
  if [ "$bk" = yes ]; then
    bk_reset kiln-bench:amd64 kiln-bench:arm64
    measure bk-x-cold bash -c bk_two
    measure bk-x-rebuild bash -c bk_two
    bk_reset kiln-bench:amd64 kiln-bench:arm64
    measure bk-emu-arm64 bash -c 'bk_emu arm64'
    measure bk-emu-arm64-rebuild bash -c 'bk_emu arm64'
    measure bk-emu-amd64 bash -c 'bk_emu amd64'
    bk_reset kiln-bench:amd64 kiln-bench:arm64
  fi
done
# The index has both platforms, and the arm64 step ran under emulation.
for a in amd64 arm64; do
  [ "$(KILN_HOME=$work/kiln "$kiln" inspect --platform "linux/$a" app:multi | jq -r .config.architecture)" = "$a" ] \
    || { echo "app:multi has no linux/$a image" >&2; exit 1; }
done

m() { median "$1" 2; }
kc=$(m kiln-x-cold); kr=$(m kiln-x-rebuild); bc=$(m bk-x-cold); br=$(m bk-x-rebuild)
ver=$(bk_version || true)
echo "### Two-platform build (linux/amd64 + linux/arm64) of a small C program, cross-compiled via \`\$BUILDPLATFORM\` ($(date -u +%F), $(machine), load average $(load), median of $runs)"
echo
echo "| tool | cold build | no-change rebuild | peak memory (cold) |"
echo "|---|---|---|---|"
echo "| kiln $rev, one \`--platform linux/amd64,linux/arm64\` build, one index | ${kc} s | ${kr} s | $(( $(median kiln-x-cold 3) / 1024 )) MiB |"
if [ "$bk" = yes ]; then
  echo "| BuildKit (dockerd $ver), two one-platform builds at once | ${bc} s | ${br} s | (daemon) |"
  echo "| kiln / BuildKit | $(x "$kc" "$bc") (target ≤ 0.5x: $(target "$kc" "$bc" 0.5)) | $(x "$kr" "$br") (target ≤ 0.2x: $(target "$kr" "$br" 0.2)) | |"
fi
echo
echo "### Emulated RUN step: arm64 busybox under qemu-aarch64 ($(date -u +%F), median of $runs)"
echo
echo "| tool | arm64 under QEMU, cold | native amd64, cold | emulated / native | no-change rebuild (arm64) |"
echo "|---|---|---|---|---|"
echo "| kiln $rev | $(m kiln-emu-arm64) s | $(m kiln-emu-amd64) s | $(x "$(m kiln-emu-arm64)" "$(m kiln-emu-amd64)") | $(m kiln-emu-arm64-rebuild) s |"
if [ "$bk" = yes ]; then
  echo "| BuildKit (dockerd $ver) | $(m bk-emu-arm64) s | $(m bk-emu-amd64) s | $(x "$(m bk-emu-arm64)" "$(m bk-emu-amd64)") | $(m bk-emu-arm64-rebuild) s |"
  echo "| kiln / BuildKit | $(x "$(m kiln-emu-arm64)" "$(m bk-emu-arm64)") | $(x "$(m kiln-emu-amd64)" "$(m bk-emu-amd64)") | | $(x "$(m kiln-emu-arm64-rebuild)" "$(m bk-emu-arm64-rebuild)") (target ≤ 0.2x: $(target "$(m kiln-emu-arm64-rebuild)" "$(m bk-emu-arm64-rebuild)" 0.2)) |"
fi
