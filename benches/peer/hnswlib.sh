#!/usr/bin/env bash
# hnswlib (M 16, ef_construction 200), the peer of
# `cargo run --release --example ann_bench`: build time, then recall@10 and
# single-thread queries/s per ef (batched call and Python loop). Run it on the
# same machine in the same session as ours, alternating, several rounds.
# Needs PyPI; builds a throwaway venv in target/peer-hnswlib-venv and, without
# --data, the clustered 100k x 256 data set in target/peer-ann (numpy, ~10 s).
#   bash benches/peer/hnswlib.sh [--data DIR/clustered-256] [--build-threads 2] [--index-out F | --load-index F]
# Ours on the same files:
#   cargo run --release --example ann_bench -- --base DIR/clustered-256_base.fvecs \
#     --query DIR/clustered-256_query.fvecs --gt DIR/clustered-256_groundtruth.ivecs --ef 12,16,24,32
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/peer-hnswlib-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q hnswlib numpy psutil
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
exec "$venv/bin/python" "$root/benches/peer/bench_hnswlib.py" --data "$data" "${args[@]}"
