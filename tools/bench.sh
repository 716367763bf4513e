#!/usr/bin/env bash
# Speed of captiond against the PyTorch reference on the same weights and thread count:
# a full-size random-weight Florence-2-base (built by bench_reference.py on first use),
# <CAPTION>, greedy, exactly 20 new tokens, batch 1 and 4, CPU, f32.
# Prints both results and the ratio (captiond images/s ÷ PyTorch images/s) per batch size.
#
#   tools/bench.sh [MODEL_DIR]        PYTHON=/path/to/python with torch + transformers
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-bench-models/florence2-base-random}"
threads="${THREADS:-$(nproc)}"
python="${PYTHON:-python3}"
runs="${RUNS:-3}"

cargo build --release --quiet
out=$(mktemp -d)
echo "== PyTorch reference ($threads threads)"
"$python" tools/bench_reference.py "$model" --threads "$threads" --runs "$runs" | tee "$out/ref.txt"
echo "== captiond"
RAYON_NUM_THREADS="$threads" ./target/release/captiond bench --model-dir "$model" --runs "$runs" | tee "$out/ours.txt"
"$python" - "$out/ref.txt" "$out/ours.txt" <<'PY'
import json, sys
last = lambda p: json.loads([l for l in open(p) if l.startswith("{")][-1])
ref, ours = last(sys.argv[1]), last(sys.argv[2])
print("== ratio (captiond / PyTorch, images/s; > 1 means captiond is faster)")
for key, r in ref["results"].items():
    o = ours["results"][key]
    print(f"batch {r['batch']}: captiond {o['images_per_s']:.3f} vs PyTorch {r['images_per_s']:.3f} images/s"
          f" = {o['images_per_s'] / r['images_per_s']:.2f}x  (vision {o['vision_s']:.2f} vs {r['vision_s']:.2f} s,"
          f" text encoder {o['text_encoder_s']:.2f} vs {r['text_encoder_s']:.2f} s,"
          f" decode {o['decode_s']:.2f} vs {r['decode_s']:.2f} s)")
PY
