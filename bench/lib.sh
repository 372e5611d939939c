# Shared helpers for the benchmarks: timing with peak memory, medians, machine description.

# measure LABEL CMD...: runs CMD once, appends "LABEL seconds peak_kib" to $RESULTS.
measure() {
  local label=$1; shift
  local tf; tf=$(mktemp)
  /usr/bin/time -f "%e %M" -o "$tf" "$@" >/dev/null 2>>"${BENCH_LOG:-/dev/null}" || { echo "failed: $*" >&2; cat "$tf" >&2; return 1; }
  echo "$label $(tail -1 "$tf")" >> "$RESULTS"
  rm -f "$tf"
}

# median LABEL FIELD: median of field 2 (seconds) or 3 (KiB) over the runs of LABEL.
median() {
  awk -v l="$1" -v f="$2" '$1 == l { print $f }' "$RESULTS" | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "n/a"; exit } print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

machine() {
  echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
}
