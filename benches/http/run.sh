#!/usr/bin/env bash
# HTTP load figures with wrk (Debian package `wrk`) against a release build on
# the tiny fixture model: /v1/embeddings (model work every request) at 1, 32
# and 128 connections, and search with a cached query embedding at 1 and 32.
# Prints wrk's latency distribution (p50/p75/p90/p99) and requests/s.
#   bash benches/http/run.sh            # builds release first
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "install wrk: apt-get install -y wrk" >&2; exit 1; }
cargo build --release --quiet
BIN=target/release/tkr-embed
MODEL=tests/fixtures/qwen2vl-tiny/model
DATA=$(mktemp -d)
PORT=${PORT:-18777}
DURATION=${DURATION:-15s}
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
$BIN --model $MODEL --data-dir "$DATA" --log-level warn serve --port $PORT > "$DATA/server.out" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf localhost:$PORT/health >/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:$PORT

# A collection of 1000 documents (random vectors through the API, plus a few
# embedded texts) for the search runs.
curl -sf -XPOST $URL/collections -H 'content-type: application/json' -d '{"name":"bench"}' >/dev/null
python3 - "$URL" <<'PY'
import json, random, sys, urllib.request
url = sys.argv[1]
random.seed(7)
def post(path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
for i in range(1000):
    post("/collections/bench/documents", {"id": f"v{i}", "vector": [random.gauss(0, 1) for _ in range(64)],
                                           "metadata": {"i": i}})
for t in ["a photo of a red apple", "a wooden table", "a city at night"]:
    post("/collections/bench/documents", {"text": t})
PY

for c in 1 32 128; do
  t=$(( c < 2 ? 1 : 2 ))
  echo "== POST /v1/embeddings, $c connection(s), $DURATION"
  wrk -t$t -c$c -d$DURATION --latency -s benches/http/embeddings.lua $URL | grep -E "50%|75%|90%|99%|Requests/sec|non-2xx|Socket"
done
for c in 1 32; do
  t=$(( c < 2 ? 1 : 2 ))
  echo "== POST /collections/bench/search (cached query), $c connection(s), $DURATION"
  wrk -t$t -c$c -d$DURATION --latency -s benches/http/search.lua $URL/collections/bench/search | grep -E "50%|75%|90%|99%|Requests/sec|non-2xx|Socket"
done
echo "== engine after the runs"
curl -sf $URL/metrics | grep -E "^tkr_engine_(max_batch_size|batch_size_(sum|count)|cache_hit_ratio|queue_depth) "

# Overload: a queue of 8 under 128 connections must answer the excess with
# deliberate 503s (Retry-After), never time out or drop connections.
kill $SERVER; wait $SERVER 2>/dev/null || true
TKR_SERVER_MAX_QUEUE=8 $BIN --model $MODEL --data-dir "$DATA" --log-level error serve --port $PORT > "$DATA/server2.out" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf localhost:$PORT/health >/dev/null && break; sleep 0.1; done
echo "== POST /v1/embeddings, 128 connections, server.max_queue=8"
wrk -t2 -c128 -d$DURATION --latency -s benches/http/embeddings.lua $URL | grep -E "50%|99%|Requests/sec|non-2xx|Socket"
curl -sf $URL/metrics | grep -E '^tkr_http_requests_total\{method="POST",route="/v1/embeddings"'
