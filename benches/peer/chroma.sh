#!/usr/bin/env bash
# Chroma embedded (PersistentClient, 1.5.x) on precomputed vectors, the peer of
# `cargo run --release --example insert_bench` (durable inserts): prints its add
# rate (ids + embeddings, batches of --batch, default 5000, one writer), then its
# query rate and recall. Run it on the same machine in the same session as ours.
# Needs PyPI; builds a throwaway venv in target/peer-chroma-venv and, without
# --data, the clustered 100k x 256 data set in target/peer-ann (numpy, ~10 s).
#   bash benches/peer/chroma.sh [--data DIR/clustered-256] [--batch 5000] [--json-out FILE]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/peer-chroma-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "chromadb==1.5.*" numpy psutil
fi
data=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -z "$data" ]; then
  data="$root/target/peer-ann/clustered-256"
  if [ ! -f "$data/clustered-256_base.fvecs" ]; then
    "$venv/bin/python" "$root/benches/peer/gen_ann_datasets.py" --out "$root/target/peer-ann" \
      --only clustered-256
  fi
fi
lscpu | grep "Model name"
"$venv/bin/python" -c "import chromadb; print('chromadb', chromadb.__version__)"
# The database goes to target/peer-dbs/chroma_<data set> (on disk; replaced on each run).
exec "$venv/bin/python" "$root/benches/peer/bench_embedded_dbs.py" --db chroma --data "$data" \
  --workdir "$root/target/peer-dbs" "${args[@]+"${args[@]}"}"
