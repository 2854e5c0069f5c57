#!/usr/bin/env bash
# HF transformers on the bench model, for `cargo bench --bench embed` to be
# compared with on the same machine in the same session (see the README's
# Benchmarks section). Needs PyPI; builds a throwaway venv in target/peer-venv.
#   bash benches/peer/transformers.sh [--reps 5] [--cases text8,img448,...]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/peer-venv"
model="$root/target/peer-bench-model"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch transformers safetensors tokenizers pillow numpy
  # transformers' Qwen2-VL processor imports torchvision; any recent build will do.
  "$venv/bin/pip" install -q --no-deps torchvision || true
fi
if [ ! -f "$model/model/config.json" ]; then
  "$venv/bin/python" "$root/benches/peer/gen_qwen2vl_bench_model.py" --out "$model" \
    --tokenizer-dir "$root/tests/fixtures/qwen2vl-tiny/model"
fi
lscpu | grep "Model name"
exec "$venv/bin/python" "$root/benches/peer/bench_qwen2vl_embed.py" --model "$model/model" \
  --dtype fp32 --threads "$(nproc)" --paths body --reps 5 \
  --cases text8,img448,img1024x768,fused448 "$@"
