#!/usr/bin/env bash
# Soak: CONNECTIONS (100) connections for DURATION (10m) of mixed load with
# wrk against a release server on the tiny fixture model — vector inserts
# (and some text inserts, embedded by the model), deletes of acknowledged
# inserts, searches by vector and by text, /v1/embeddings (see mixed.lua) —
# with the server's RSS (VmRSS) sampled every second into a CSV.
#
# Fails (exit 1) on any answer other than 2xx or 503 `overloaded`, on any
# socket error or timeout, when the server dies or does not stop cleanly,
# or when RSS at the end is more than MAX_GROWTH (10) % above RSS after the
# warm-up (WARMUP seconds, default 60). Prints requests/s, p50/p90/p99
# latency, the status counts and RSS after the warm-up, at the end, the
# maximum and the growth.
#   bash benches/soak/run.sh                       # builds release first; 10 minutes
#   DURATION=2m bash benches/soak/run.sh           # a shorter check
# Output files (rss.csv: elapsed_s,rss_kib,rss_anon_kib,rss_file_kib; wrk.txt; server.log) in OUT
# (default target/soak).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "install wrk: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/tkr-embed
MODEL=tests/fixtures/qwen2vl-tiny/model
DATA=$(mktemp -d)
PORT=${PORT:-18778}
DURATION=${DURATION:-10m}
CONNECTIONS=${CONNECTIONS:-100}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-60}
MAX_GROWTH=${MAX_GROWTH:-10}
OUT=${OUT:-target/soak}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SERVER=
SAMPLER=
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
$BIN --model $MODEL --data-dir "$DATA/db" --log-level warn serve --port "$PORT" \
  > "$OUT/server.out" 2> "$OUT/server.log" &
SERVER=$!
for _ in $(seq 300); do curl -sf "localhost:$PORT/health" >/dev/null && break; sleep 0.1; done
curl -sf "localhost:$PORT/health" >/dev/null || { echo "server did not start:" >&2; cat "$OUT/server.log" >&2; exit 1; }
URL=http://127.0.0.1:$PORT

# The collection: 2,000 vector documents and 20 texts that stay (the load's
# own inserts are deleted again).
curl -sf -XPOST "$URL/collections" -H 'content-type: application/json' -d '{"name":"soak"}' >/dev/null
python3 - "$URL" <<'PY'
import json, random, sys, urllib.request
url = sys.argv[1]
random.seed(11)
def post(path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
for i in range(2000):
    post("/collections/soak/documents", {"id": f"seed{i}", "vector": [random.gauss(0, 1) for _ in range(64)],
                                          "metadata": {"i": i}})
for i in range(20):
    post("/collections/soak/documents", {"id": f"text{i}", "text": f"seed text number {i} about apples"})
PY

# RSS every second, from /proc (VmRSS, kB).
# RssAnon (heap) and RssFile (mapped files: the binary, libraries, index
# files) are the two parts of VmRSS that can grow.
echo "elapsed_s,rss_kib,rss_anon_kib,rss_file_kib" > "$OUT/rss.csv"
(
  start=$(date +%s%N)
  while [ -r "/proc/$SERVER/status" ]; do
    rss=$(awk '/^VmRSS:/ {r=$2} /^RssAnon:/ {a=$2} /^RssFile:/ {f=$2}
               END {if (r != "") print r "," a "," f}' "/proc/$SERVER/status" 2>/dev/null) || break
    [ -n "$rss" ] || break
    tenths=$(( ($(date +%s%N) - start) / 100000000 ))
    echo "$((tenths / 10)).$((tenths % 10)),$rss" >> "$OUT/rss.csv"
    sleep 1
  done
) &
SAMPLER=$!

echo "== soak: $CONNECTIONS connections, $THREADS wrk threads, $DURATION, mixed load (benches/soak/mixed.lua)"
SOAK_COUNTS="$OUT/counts.txt" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --timeout 30s --latency \
  -s benches/soak/mixed.lua "$URL" > "$OUT/wrk.txt" 2>&1 || { cat "$OUT/wrk.txt"; exit 1; }
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
SAMPLER=

fail=0
if ! kill -0 "$SERVER" 2>/dev/null; then
  echo "FAIL: the server died during the run; its log:" >&2
  tail -30 "$OUT/server.log" >&2
  exit 1
fi
DOCS=$(curl -sf "$URL/collections/soak" | python3 -c 'import json,sys; print(json.load(sys.stdin)["documents"])')

grep -E "Latency|Req/Sec|requests in|Requests/sec|Socket" "$OUT/wrk.txt" || true
python3 - "$OUT/counts.txt" "$OUT/rss.csv" "$WARMUP" "$MAX_GROWTH" "$DOCS" <<'PY' || fail=1
import csv, sys
counts_path, rss_path, warmup, max_growth, docs = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
kv, statuses = {}, {}
for line in open(counts_path):
    parts = line.split()
    if parts[0] == "status":
        statuses[parts[1]] = int(parts[2])
    else:
        kv[parts[0]] = parts[1]
print(f"requests/s {kv['requests_per_s']}  ({kv['requests']} requests in {kv['seconds']} s)")
print(f"latency p50 {kv['p50_ms']} ms  p90 {kv['p90_ms']} ms  p99 {kv['p99_ms']} ms  max {kv['max_ms']} ms")
print("statuses: " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in sorted(statuses.items())))
print(f"socket errors: {kv['socket_errors']} ({kv['socket_errors_detail']})")
print(f"documents in the collection at the end: {docs}")
bad = {k: v for k, v in statuses.items() if not (k.startswith("2") or k == "503_overloaded")}
ok = True
if bad:
    print(f"FAIL: unexpected statuses {bad} (see wrk.txt for the first bodies)")
    ok = False
if int(kv["socket_errors"]) > 0:
    print("FAIL: socket errors or timeouts")
    ok = False
table = list(csv.DictReader(open(rss_path)))
rows = [(float(r["elapsed_s"]), int(r["rss_kib"])) for r in table]
if not rows:
    print("FAIL: no RSS samples")
    sys.exit(1)
after = [kib for t, kib in rows if t >= warmup]
if not after:
    print(f"FAIL: the run is shorter than the warm-up ({warmup:.0f} s)")
    sys.exit(1)
base, end = after[0], rows[-1][1]
peak = max(kib for _, kib in rows)
peak_after = max(after)
growth = (end - base) / base * 100
mib = lambda kib: f"{kib / 1024:.1f} MiB"
print(f"RSS: {mib(rows[0][1])} at start, {mib(base)} at {warmup:.0f} s (after warm-up), {mib(end)} at the end "
      f"({rows[-1][0]:.0f} s), max {mib(peak)}; growth after warm-up {growth:+.1f} % "
      f"(max {(peak_after - base) / base * 100:+.1f} %), {len(rows)} samples")
at = lambda key, t: next(int(r[key]) for r in table if float(r["elapsed_s"]) >= t)
print(f"  of which heap (RssAnon) {mib(at('rss_anon_kib', warmup))} -> {mib(int(table[-1]['rss_anon_kib']))}, "
      f"mapped files (RssFile) {mib(at('rss_file_kib', warmup))} -> {mib(int(table[-1]['rss_file_kib']))}")
if growth > max_growth:
    print(f"FAIL: RSS grew {growth:.1f} % after the warm-up (limit {max_growth:.0f} %)")
    ok = False
sys.exit(0 if ok else 1)
PY
[ -s "$OUT/wrk.txt" ] && grep -q "first unexpected answers" "$OUT/wrk.txt" && sed -n '/first unexpected answers/,$p' "$OUT/wrk.txt" | head -12 || true

# A clean stop after the load: SIGTERM, in-flight requests finish, indexes
# are checkpointed.
kill -TERM "$SERVER"
wait "$SERVER" || true
SERVER=
if ! grep -q "stopped cleanly" "$OUT/server.log"; then
  echo "FAIL: the server did not stop cleanly; its log:" >&2
  tail -30 "$OUT/server.log" >&2
  fail=1
fi
if grep -qE " (ERROR|WARN) " "$OUT/server.log"; then
  echo "server log warnings/errors (first 10):"
  grep -E " (ERROR|WARN) " "$OUT/server.log" | head -10
fi
echo "files: $OUT/rss.csv, $OUT/wrk.txt, $OUT/server.log"
[ "$fail" = 0 ] && echo "soak: OK" || { echo "soak: FAILED"; exit 1; }
