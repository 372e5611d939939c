# Shared helpers for the benchmarks: timing with peak memory, medians, machine description.

# measure LABEL CMD...: runs CMD once, appends "LABEL seconds peak_kib cpu_seconds" to
# $RESULTS (cpu = user + system, which other load on the machine barely changes).
measure() {
  local label=$1; shift
  local tf; tf=$(mktemp)
  /usr/bin/time -f "%e %M %U %S" -o "$tf" "$@" >/dev/null 2>>"${BENCH_LOG:-/dev/null}" || { echo "failed: $*" >&2; cat "$tf" >&2; [ -z "${BENCH_LOG:-}" ] || tail -5 "$BENCH_LOG" >&2; return 1; }
  echo "$label $(tail -1 "$tf" | awk '{ printf "%s %s %.2f", $1, $2, $3 + $4 }')" >> "$RESULTS"
  rm -f "$tf"
}

# median LABEL FIELD: median of field 2 (seconds), 3 (KiB) or 4 (CPU seconds) over the runs
# of LABEL.
median() {
  awk -v l="$1" -v f="$2" '$1 == l { print $f }' "$RESULTS" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "n/a"; exit } print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
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
