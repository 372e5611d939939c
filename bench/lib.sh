# Shared helpers for the benchmarks: timing with peak memory, medians, machine description.

# kiln_binary: sets kiln (the binary to measure) and rev (what to call it in tables):
# $KILN_BIN and $KILN_REV when given, else a release build of this checkout and its commit.
kiln_binary() {
  if [ -n "${KILN_BIN:-}" ]; then
    kiln=$KILN_BIN; rev=${KILN_REV:-"(KILN_BIN)"}
  else
    cargo build --release -q -p kiln
    kiln=${CARGO_TARGET_DIR:-$(pwd)/target}/release/kiln; rev=$(git rev-parse --short HEAD)
  fi
}

# measure LABEL CMD...: runs CMD once, appends "LABEL seconds peak_kib cpu_seconds" to
# $RESULTS (cpu = user + system, which other load on the machine barely changes). Seconds
# come from bash's microsecond clock around GNU time, not from time's own %e, which rounds
# to 10 ms: a no-change rebuild takes a few milliseconds.
measure() {
  local label=$1; shift
  local tf; tf=$(mktemp)
  local t0=$EPOCHREALTIME
  /usr/bin/time -f "%e %M %U %S" -o "$tf" "$@" >/dev/null 2>>"${BENCH_LOG:-/dev/null}" || { echo "failed: $*" >&2; cat "$tf" >&2; [ -z "${BENCH_LOG:-}" ] || tail -5 "$BENCH_LOG" >&2; return 1; }
  local t1=$EPOCHREALTIME
  echo "$label $(tail -1 "$tf" | awk -v a="$t0" -v b="$t1" '{ printf "%.4f %s %.2f", b - a, $2, $3 + $4 }')" >> "$RESULTS"
  rm -f "$tf"
}

# median LABEL FIELD: median of field 2 (seconds), 3 (KiB) or 4 (CPU seconds) over the runs
# of LABEL.
median() {
  awk -v l="$1" -v f="$2" '$1 == l { print $f }' "$RESULTS" | sort -g | awk -v f="$2" '{ a[NR] = $1 } END { if (NR == 0) { print "n/a"; exit } m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; if (f == 2) printf "%.3f\n", m; else print m }'
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_registry DIR LOG: Debian's docker-registry on loopback with empty storage in
# DIR/registry, its errors appended to LOG; sets port (kept across calls, so a restarted
# registry has the same address), reg (127.0.0.1:PORT) and reg_pid. Exits 3 if it does not
# answer within 10 s.
start_registry() {
  local dir=$1 log=$2
  [ -n "${port:-}" ] || port=$(free_port)
  reg=127.0.0.1:$port
  rm -rf "$dir/registry" && mkdir -p "$dir/registry"
  printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$dir/registry" "$reg" > "$dir/registry.yml"
  docker-registry serve "$dir/registry.yml" 2>>"$log" &
  reg_pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "docker-registry did not start (see $log)" >&2; exit 3
}

machine() {
  echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
}

# BuildKit as a peer (issue 16): Debian's dockerd 20.10 with its built-in BuildKit, started on a
# private socket by ../shared/peers/buildkit (BUILDKIT_PEER overrides the path; BUILDKIT_PEER_DIR
# gives a daemon of one's own). bk_start sets $peer and bk=yes when the daemon is up, bk=no if not.
bk_start() {
  peer=${BUILDKIT_PEER:-$(pwd)/../shared/peers/buildkit}
  [ -x "$peer" ] || peer=/work/shared/peers/buildkit
  bk=no
  if [ -x "$peer" ] && "$peer" start >&2; then bk=yes; fi
}
bkd() { "$peer" docker "$@"; }
# bk_reset IMAGE...: BuildKit's build cache pruned and IMAGE... removed, base images kept.
bk_reset() { bkd builder prune -af >/dev/null 2>&1 || true; [ $# -eq 0 ] || bkd image rm -f "$@" >/dev/null 2>&1 || true; }
bk_version() { bkd version -f '{{.Server.Version}}' 2>/dev/null; }

# x A B: A / B as "0.25x" (n/a when either is missing).
x() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || a == "" || b == "" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
# target A B LIMIT: "met" when A / B <= LIMIT, else "missed" (n/a when either is missing).
target() { awk -v a="$1" -v b="$2" -v l="$3" 'BEGIN { if (a == "n/a" || b == "n/a" || a == "" || b == "" || b == 0) print "n/a"; else print (a / b <= l) ? "met" : "missed" }'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
