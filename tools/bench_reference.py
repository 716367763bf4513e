#!/usr/bin/env python3
"""CPU throughput of the PyTorch reference on a full-size random-weight Florence-2-base.

    /work/pyenv/bin/python tools/bench_reference.py [FOLDER] [--threads 2] [--runs 3]

FOLDER (default bench-models/florence2-base-random/, git-ignored) is created if missing:
a Florence-2-base with the exact real architecture (DaViT 128/256/512/1024, heads 4/8/16/32,
depths 1/1/9/1, window 12, 768x768 input, 577 image tokens; BART 6+6 layers, d_model 768,
12 heads, ffn 3072) and random weights, saved in the native transformers layout
(model.safetensors, config.json, generation_config.json, preprocessor_config.json,
processor_config.json, tokenizer.json, tokenizer_config.json) so the Rust side can load the
same folder. The tokenizer is the tiny fixture BPE padded with filler tokens to BART's 50264
base tokens, then <mask> (50264), the 1024 Florence tokens (50265..51288) and <image>
(51289): 51290 tokens; the model vocab is padded to a multiple of 64 (51328) as
transformers' Florence-2 conversion does.

Timed: <CAPTION>, greedy (num_beams=1), exactly 20 new tokens (min_new_tokens =
max_new_tokens = 20: </s> is suppressed until the forced </s> of the 20th step, so every run
makes 20 decoder forward passes), batch 1 and batch 4, one warm-up, then the median of
--runs runs. Image preprocessing (Pillow resize to 768) is timed separately and is not part
of images/s. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (tokenizer, scene images, config helpers)

from transformers import (  # noqa: E402
    AddedToken,
    BartTokenizer,
    CLIPImageProcessorPil,
    Florence2Config,
    Florence2ForConditionalGeneration,
    Florence2Processor,
)
from transformers.modeling_outputs import BaseModelOutput  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
NEW_TOKENS = 20


def build_tokenizer() -> BartTokenizer:
    small = mf.build_tokenizer()
    base = {t: i for t, i in small.get_vocab().items() if i < small.convert_tokens_to_ids("<mask>")}
    # Reuse the trained merges; pad the vocab with unreachable filler tokens to 50264.
    state = json.loads(small.backend_tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    i = 0
    while len(base) < 50264:
        tok = f"\u0120filler{i}"
        if tok not in base:
            base[tok] = len(base)
        i += 1
    bt = BartTokenizer(
        vocab=base,
        merges=merges,
        mask_token=AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True),
    )
    bt.add_tokens([AddedToken(t, special=True, normalized=False) for t in mf.FLORENCE_TOKENS], special_tokens=True)
    bt.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    bt._set_model_specific_special_tokens(special_tokens={"image_token": "<image>"})
    bt.model_max_length = 1024
    assert bt.convert_tokens_to_ids("<mask>") == 50264
    assert bt.convert_tokens_to_ids("<od>") == 50265
    assert bt.convert_tokens_to_ids("<loc_0>") == 50269
    assert bt.convert_tokens_to_ids("<and>") == 51288
    assert bt.convert_tokens_to_ids("<image>") == 51289 == len(bt) - 1
    return bt


def build(folder: Path) -> None:
    t0 = time.perf_counter()
    tok = build_tokenizer()
    vocab = (len(tok) + 63) // 64 * 64  # 51328
    spec = dict(
        image_size=768, embed_dim=[128, 256, 512, 1024], heads=[4, 8, 16, 32], depths=[1, 1, 9, 1], window=12,
        d_model=768, enc_layers=6, dec_layers=6, text_heads=12, ffn=3072, max_positions=1024,
    )
    config = mf.make_config(spec, vocab, tok.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    model = Florence2ForConditionalGeneration(config).eval()  # transformers' default random init
    model.generation_config = mf.generation_config()
    proc = mf.make_processor(tok, spec)
    assert proc.num_image_tokens == 577
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, max_shard_size="10GB")
    proc.save_pretrained(folder)
    ip = proc.image_processor.to_dict()
    ip["processor_class"] = "Florence2Processor"
    (folder / "preprocessor_config.json").write_text(json.dumps(ip, indent=2, sort_keys=True) + "\n")
    n = sum(p.numel() for p in model.parameters())
    print(f"built {folder} ({n / 1e6:.1f} M parameters, vocab {vocab}) in {time.perf_counter() - t0:.1f} s")


def median_time(fn, runs: int) -> tuple[float, float]:
    """(median wall seconds, median process CPU seconds) after one warm-up call."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", default=str(REPO / "bench-models" / "florence2-base-random"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batches", default="1,4")
    args = ap.parse_args()

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    if not (folder / "config.json").exists():
        build(folder)

    t0 = time.perf_counter()
    model = Florence2ForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    proc = Florence2Processor.from_pretrained(folder)
    load_s = time.perf_counter() - t0
    print(f"loaded in {load_s:.1f} s; torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"attn {model.config._attn_implementation}")

    images = [mf._scene(1024, 768, 100 + i) for i in range(4)]
    load_start = loadavg()
    results = {}
    for bs in [int(b) for b in args.batches.split(",")]:
        ims = images[:bs]
        pre_s, _ = median_time(lambda: proc(text=["<CAPTION>"] * bs, images=ims, return_tensors="pt"), args.runs)
        inputs = proc(text=["<CAPTION>"] * bs, images=ims, return_tensors="pt")
        gen_kw = dict(num_beams=1, do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)

        with torch.inference_mode():
            out = model.generate(**inputs, **gen_kw)
            assert out.shape == (bs, NEW_TOKENS + 1), out.shape

            def vision():
                return model.model.vision_tower(inputs["pixel_values"]).last_hidden_state

            feats = vision()

            def text_encoder():
                image_features = model.model.multi_modal_projector(feats)
                embeds = model.get_input_embeddings()(inputs["input_ids"])
                mask = (inputs["input_ids"] == model.config.image_token_id).unsqueeze(-1)
                embeds = embeds.masked_scatter(mask, image_features)
                return model.model.language_model.encoder(inputs_embeds=embeds, attention_mask=inputs["attention_mask"])

            enc = text_encoder()

            def decode():
                eo = BaseModelOutput(last_hidden_state=enc.last_hidden_state)
                return model.generate(
                    input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    encoder_outputs=eo, **gen_kw)

            ref = decode()
            assert torch.equal(ref, out), "decode-only path disagrees with the full generate"

            total_s, total_cpu = median_time(lambda: model.generate(**inputs, **gen_kw), args.runs)
            vision_s, vision_cpu = median_time(vision, args.runs)
            encoder_s, encoder_cpu = median_time(text_encoder, args.runs)
            decode_s, decode_cpu = median_time(decode, args.runs)

        r = {
            "batch": bs,
            "images_per_s": bs / total_s,
            "total_s": total_s,
            "vision_s": vision_s,
            "text_encoder_s": encoder_s,
            "decode_s": decode_s,
            "decode_ms_per_token": 1000 * decode_s / NEW_TOKENS,
            "preprocess_s": pre_s,
            "cpu_s": {"total": total_cpu, "vision": vision_cpu, "text_encoder": encoder_cpu, "decode": decode_cpu},
        }
        results[f"b{bs}"] = r
        print(f"batch {bs}: {r['images_per_s']:.3f} images/s; generate {total_s:.3f} s = vision {vision_s:.3f} s"
              f" + text encoder {encoder_s:.3f} s + decode {decode_s:.3f} s ({r['decode_ms_per_token']:.1f} ms/token);"
              f" preprocess {pre_s:.3f} s (not included); CPU s: total {total_cpu:.2f}, vision {vision_cpu:.2f},"
              f" text encoder {encoder_cpu:.2f}, decode {decode_cpu:.2f}")

    summary = {
        "bench": "florence2-base-random",
        "impl": "pytorch-reference",
        "device": "cpu",
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "task": "<CAPTION>",
        "decoding": "greedy",
        "new_tokens": NEW_TOKENS,
        "image_size": [1024, 768],
        "runs": args.runs,
        "loadavg_1min": [load_start, loadavg()],
        "results": results,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
