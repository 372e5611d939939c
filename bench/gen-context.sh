#!/usr/bin/env bash
# Generates the COPY benchmark context of issue 2: 10,000 files of 4 KiB and one 500 MiB
# file, all random (incompressible, the worst case for the compressor), plus a Dockerfile.
# Usage: bench/gen-context.sh DIR
set -euo pipefail
dir=${1:?usage: gen-context.sh DIR}
mkdir -p "$dir/files"
if [ ! -f "$dir/big.bin" ] || [ "$(stat -c %s "$dir/big.bin")" -ne $((500 * 1024 * 1024)) ]; then
  head -c $((500 * 1024 * 1024)) /dev/urandom > "$dir/big.bin"
fi
if [ "$(find "$dir/files" -type f | wc -l)" -ne 10000 ]; then
  # One random 40 MiB stream cut into 10,000 files of 4 KiB, in 100 directories.
  head -c $((10000 * 4096)) /dev/urandom | split -b 4096 -a 4 -d - "$dir/files/f"
  (cd "$dir/files" && for i in $(seq -w 0 99); do mkdir -p "d$i"; done && i=0 && for f in f*; do mv "$f" "d$(printf %02d $((i % 100)))/"; i=$((i + 1)); done)
fi
printf 'FROM scratch\nCOPY . /data/\n' > "$dir/Dockerfile"
echo "$dir: $(find "$dir" -type f | wc -l) files, $(du -sh "$dir" | cut -f1)"
