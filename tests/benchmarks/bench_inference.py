"""Inference benchmark: AiT stages at full size (random weights) beside peer models, on this machine.

    python tests/benchmarks/bench_inference.py [--threads 2] [--runs 3] [--insseg-steps 210]
        [--only NAME ...] [--original-json FILE] [--json out.json] [--markdown out.md]

Every benchmark runs in its own subprocess (so its peak RSS is its own) with `torch.set_num_threads`, fp32,
`torch.inference_mode`, random weights, one warm-up call and the median of `--runs` timed calls (benchmarks
marked "1 run" are timed once after a shorter warm-up). The machine's fp32 matmul rate is measured in the
same run so figures from different machines compare by ratio. The original implementation's figures
(`--original-json`, written by `time_original.py` of the original-code harness on the same machine) fill
the reference column. This is a script that prints figures, not a test: nothing here asserts a speed.

A decoding step at batch 1 does little arithmetic per byte it reads (every decoder weight, the memory's
cross-attention keys/values and the self-attention cache so far), so its rate is set by memory bandwidth,
not by the matmul rate: the "memory" case measures the streaming read rate, and each decode row also reports
the bytes a step must read at the least (`decode_bytes_per_step`) and the time reading them would take at
that rate, a floor no fp32 implementation can beat once the working set outgrows the last-level cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

DEPTH = "swinv2b_480reso_depthonly"
DEPTH_PARALLEL = "swinv2b_480reso_parallel_depthonly"
INSSEG = "swinv2b_640reso_inssegonly"
BACKBONE_480_GFLOP = 190.0  # SwinV2-B at 480x480, multiply-adds counted twice

# name: (what is timed, key of the original's timing file or None)
BENCHES: dict[str, tuple[str, str | None]] = {
    "matmul": ("fp32 1024x1024 matmul (machine rate)", None),
    "memory": ("fp32 streaming read of a 256 MB buffer (machine memory bandwidth)", None),
    "backbone480_eager_b1": ("SwinV2-B backbone 480x480, eager (original computation)", "backbone480"),
    "backbone480_sdpa_b1": ("SwinV2-B backbone 480x480, sdpa (default)", "backbone480"),
    "backbone480_sdpa_b8": ("SwinV2-B backbone 480x480, sdpa, batch 8 (1 run)", None),
    "backbone640_sdpa_b1": ("SwinV2-B backbone 640x640 (windows padded to 30), sdpa", "backbone640"),
    "backbone_sdpa_vs_eager": ("fidelity: max abs difference sdpa - eager features, 480 / 640 (timed: both)", None),
    "depth_decode_b1": ("depth AR decode, encoder + 225 steps", "depth_decode"),
    "depth_decode_b8": ("depth AR decode, encoder + 225 steps, batch 8", None),
    "depth_decode_b8_threads": ("depth AR decode, batch 8, decode_num_threads=None (all threads)", None),
    "depth_decode_b1_compiled": ("depth AR decode, encoder + 225 steps, decode_compiled (torch.compile)", "depth_decode"),
    "depth_decode_b1_compiled_1thread": ("depth AR decode, decode_compiled, compiled_decode_num_threads=1", "depth_decode"),
    "parallel_decode_b1": ("AiT-P depth decode, encoder + one decoder pass", "parallel_decode"),
    "parallel_decode_b8": ("AiT-P depth decode, encoder + one decoder pass, batch 8", None),
    "insseg_decode_b1": ("instance seg. decode, encoder + prefix of the 2100 steps (top-p 0.3)", "insseg_decode"),
    "insseg_decode_b8": ("instance seg. decode, same prefix, batch 8", None),
    "insseg_decode_b8_threads": ("instance seg. decode, batch 8, decode_num_threads=None (all threads)", None),
    "insseg_decode_b1_compiled": ("instance seg. decode, same prefix, decode_compiled (torch.compile)", "insseg_decode"),
    "insseg_decode_b1_compiled_1thread": ("instance seg. decode, decode_compiled, compiled_decode_num_threads=1", "insseg_decode"),
    "insseg_decode_full_b1": ("instance seg. decode, encoder + all 2100 steps (1 run)", None),
    "insseg_decode_full_b1_compiled": ("instance seg. decode, encoder + all 2100 steps, decode_compiled (1 run)", None),
    "vqvae_decode_soft": ("depth VQ-VAE decode_soft to 480x480", "vqvae_decode_soft"),
    "e2e_depth480_b1": ("end to end AiT depth (AR), 480x480 image to metres", "e2e_depth"),
    "e2e_depth480_b1_compiled": ("end to end AiT depth (AR), 480x480, decode_compiled", "e2e_depth"),
    "e2e_parallel_depth480_b1": ("end to end AiT-P depth, 480x480 image to metres", "e2e_parallel_depth"),
    "e2e_parallel_depth480_b8": ("end to end AiT-P depth, batch 8 (1 run)", None),
    "e2e_insseg640_b1": ("end to end AiT instance seg., 640x640, all 2100 steps (1 run)", "e2e_insseg"),
    "e2e_insseg640_b1_compiled": ("end to end AiT instance seg., 640x640, all 2100 steps, decode_compiled (1 run)", "e2e_insseg"),
    "depth_anything_vitb_476": ("peer: Depth Anything (ViT-B) 476x476", None),
    "glpn_480": ("peer: GLPN 480x480", None),
    "mask2former_swinb_640": ("peer: Mask2Former (Swin-B) 640x640", None),
}  # fmt: skip
SINGLE_RUN = {
    "backbone480_sdpa_b8",
    "e2e_parallel_depth480_b8",
    "e2e_insseg640_b1",
    "e2e_insseg640_b1_compiled",
    "insseg_decode_full_b1",
    "insseg_decode_full_b1_compiled",
}


def decode_bytes_per_step(config, task: str, batch: int, steps: int) -> float:
    """Bytes a decoding step must read at the least, averaged over `steps` positions, in fp32.

    Every step reads each decoder layer's weights once (self-attention q/k/v and output, cross-attention
    query and output, the MLP, three LayerNorms), the vocabulary rows its slot may emit (object sequences:
    the box bins on 4 slots of each object, the classes on 1, the mask codes on the rest), and per image the
    memory's cross-attention keys/values (a full encoder grid) and the self-attention keys/values of the
    positions so far. The weights count once per step whatever the batch; the keys/values count per image.
    """
    d, ffn, layers = config.d_model, config.ffn_dim, config.decoder_layers
    vocab = config.vocabulary
    per_layer = (3 * d * d + 3 * d) + (d * d + d) * 3 + (ffn * d + ffn) + (d * ffn + d) + 3 * 2 * d
    weights = layers * per_layer + 2 * d
    if task == "depth":
        head_rows = _range_size(vocab.depth_range())
    else:
        length = config.object_length(task)
        rows = 4 * _range_size(vocab.box_range()) + _range_size(vocab.class_range())
        head_rows = (rows + (length - 5) * _range_size(vocab.mask_range())) / length
    memory_length = config.encoder_grid[0] * config.encoder_grid[1]
    cross = layers * 2 * memory_length * d
    mean_prefix = (steps + 1) / 2  # positions 0..t attended at step t, averaged over the steps
    self_cache = layers * 2 * mean_prefix * d
    return 4.0 * (weights + head_rows * (d + 1) + batch * (cross + self_cache))


def _range_size(id_range: tuple[int, int]) -> int:
    return id_range[1] - id_range[0]


def _median_time(fn: Callable[[], object], runs: int, warmup: Callable[[], object] | None = None):
    (warmup or fn)()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _ait(preset: str):
    from ait_hf import AiTConfig, AiTForDepthAndInstanceSegmentation

    config = AiTConfig.from_original_preset(preset)
    # Unit residual post-norms (the original's random init): with the default zero init every backbone block
    # starts as the identity, which would make the sdpa-vs-eager fidelity row vacuous (timings are unaffected).
    config.backbone_config["post_norm_init"] = 1.0
    return AiTForDepthAndInstanceSegmentation(config).eval()


def run_one(name: str, threads: int, runs: int, insseg_steps: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    info: dict = {"name": name}
    batch = 8 if "_b8" in name else 1
    runs = 1 if name in SINGLE_RUN else runs
    with torch.inference_mode():
        if name == "matmul":
            a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
            seconds, _ = _median_time(lambda: [a @ b for _ in range(20)], max(runs, 3))
            info["gflops"] = 20 * 2 * 1024**3 / seconds / 1e9
            seconds = seconds / 20
        elif name == "memory":
            # far larger than any last-level cache, so every pass reads from memory; summing is the cheapest read
            buffer = torch.ones(64 * 2**20)
            seconds, _ = _median_time(buffer.sum, max(runs, 5))
            info["gbytes_per_s"] = buffer.numel() * 4 / seconds / 1e9
        elif name == "backbone_sdpa_vs_eager":
            model = _ait(INSSEG).model.backbone
            differences = []
            start = time.perf_counter()
            for size in (480, 640):
                x = torch.randn(1, 3, size, size)
                outputs = []
                for implementation in ("eager", "sdpa"):
                    model.set_attn_implementation(implementation)
                    outputs.append(model(x).feature_maps[-1])
                differences.append((outputs[0] - outputs[1]).abs().max().item())
            seconds = time.perf_counter() - start
            info["max_abs_difference"] = differences
        elif name.startswith("backbone"):
            size = 480 if "480" in name else 640
            model = _ait(DEPTH if size == 480 else INSSEG).model.backbone
            model.set_attn_implementation("eager" if "eager" in name else "sdpa")
            x = torch.randn(batch, 3, size, size)
            seconds, _ = _median_time(lambda: model(x), runs)
            if size == 480:
                info["gflops"] = BACKBONE_480_GFLOP * batch / seconds
        elif name.startswith(("depth_decode", "parallel_decode")):
            model = _ait(DEPTH if name.startswith("depth") else DEPTH_PARALLEL)
            model.decode_num_threads = None if name.endswith("_threads") else model.decode_num_threads
            model.decode_compiled = "_compiled" in name  # compiled in the warm-up call
            model.compiled_decode_num_threads = 1 if name.endswith("_1thread") else None
            features = torch.randn(batch, 1024, 15, 15)
            start, end = model.config.vocabulary.depth_range()

            def decode():
                memory = model.model.encoder(features).last_hidden_state
                if model.config.depth_parallel:
                    ids = torch.zeros((batch, 224), dtype=torch.long)
                    hidden = model.decoder(model._embed_inputs("depth", ids), memory)
                    return model.decoder.logits(hidden, start, end)
                return model._decode_depth_autoregressive(memory, 225, start, end, None)

            seconds, _ = _median_time(decode, runs)
            info.update(steps=225, ms_per_step=seconds / 225 * 1e3)
            if not model.config.depth_parallel:
                info["bytes_per_step"] = decode_bytes_per_step(model.config, "depth", batch, 225)
        elif name.startswith("insseg_decode"):
            model = _ait(INSSEG)
            model.decode_num_threads = None if name.endswith("_threads") else model.decode_num_threads
            model.decode_compiled = "_compiled" in name  # compiled in the warm-up call
            model.compiled_decode_num_threads = 1 if name.endswith("_1thread") else None
            if "_full" not in name:
                model.config.num_queries = max(1, insseg_steps // 21)
            features = torch.randn(batch, 1024, 20, 20)

            def decode():
                memory = model.model.encoder(features).last_hidden_state
                generator = torch.Generator().manual_seed(0)
                return model._decode_objects(memory, "instance_segmentation", False, generator)

            seconds, _ = _median_time(decode, runs)
            steps = model.config.num_queries * 21
            info.update(steps=steps, ms_per_step=seconds / steps * 1e3)
            info["bytes_per_step"] = decode_bytes_per_step(
                model.config, "instance_segmentation", batch, steps
            )
        elif name == "vqvae_decode_soft":
            model = _ait(DEPTH).depth_tokenizer
            logits = torch.randn(1, 225, 128)
            seconds, _ = _median_time(lambda: model.decode_soft(logits), runs)
        elif name.startswith("e2e_insseg"):
            model = _ait(INSSEG)
            model.decode_compiled = name.endswith("_compiled")
            x = torch.randn(batch, 3, 640, 640)
            full = model.config.num_queries

            def short():  # warm-up on a few objects (compiled: the whole sequence, whose length the graph fixes)
                model.config.num_queries = full if model.decode_compiled else 2
                model(x, task="instance_segmentation", generator=torch.Generator().manual_seed(0))
                model.config.num_queries = full

            seconds, _ = _median_time(
                lambda: model(x, task="instance_segmentation", generator=torch.Generator().manual_seed(0)),
                runs,
                warmup=short,
            )
            info.update(steps=full * 21)
        elif name.startswith("e2e"):
            model = _ait(DEPTH_PARALLEL if "parallel" in name else DEPTH)
            model.decode_compiled = name.endswith("_compiled")  # compiled in the warm-up call
            x = torch.randn(batch, 3, 480, 480)
            seconds, _ = _median_time(lambda: model(x, task="depth"), runs)
        else:
            model, x = _peer(name)
            seconds, _ = _median_time(lambda: model(pixel_values=x), runs)
    if batch > 1:
        info["images_per_s"] = batch / seconds
    info.update(
        seconds=seconds, batch=batch, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return info


def _peer(name: str):
    """Peer models built from configs with random weights at matched input sizes (nothing downloaded)."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        GLPNConfig,
        GLPNForDepthEstimation,
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        SwinConfig,
    )  # fmt: skip

    if name == "depth_anything_vitb_476":
        backbone = Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, image_size=518,
                                patch_size=14, out_features=["stage3", "stage6", "stage9", "stage12"],
                                reshape_hidden_states=False)  # fmt: skip
        config = DepthAnythingConfig(  # the ViT-B sizes of Depth-Anything-Base
            backbone_config=backbone,
            reassemble_hidden_size=768,
            neck_hidden_sizes=[96, 192, 384, 768],
            fusion_hidden_size=128,
        )
        return DepthAnythingForDepthEstimation(config).eval(), torch.randn(1, 3, 476, 476)
    if name == "glpn_480":
        return GLPNForDepthEstimation(GLPNConfig()).eval(), torch.randn(1, 3, 480, 480)
    backbone = SwinConfig(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12, image_size=384,
                          out_features=["stage1", "stage2", "stage3", "stage4"])  # fmt: skip
    config = Mask2FormerConfig(backbone_config=backbone, use_pretrained_backbone=False)
    return Mask2FormerForUniversalSegmentation(config).eval(), torch.randn(1, 3, 640, 640)


# ---------------------------------------------------------------------------------------------- report
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def original_reference(path: str | None) -> dict[str, dict]:
    """The original's medians by our reference keys (and sums of stages for its end-to-end figures)."""
    if not path:
        return {}
    with open(path) as f:
        saved = json.load(f)
    results = {r["name"]: r for r in (saved["results"] if isinstance(saved, dict) else saved)}
    ref = {}
    for name, r in results.items():
        entry = {"seconds": r["median_s"], "peak_rss_mb": r.get("peak_rss_mb")}
        if "median_ms_per_step" in r:
            entry["ms_per_step"] = r["median_ms_per_step"]
            entry["steps"] = r.get("steps")
        ref[name] = entry
    if {"backbone480", "depth_decode", "vqvae_decode_soft"} <= ref.keys():
        extra = ref["backbone480"]["seconds"] + ref["vqvae_decode_soft"]["seconds"]
        ref["e2e_depth"] = {"seconds": extra + ref["depth_decode"]["seconds"], "sum": True}
        if "parallel_decode" in ref:
            ref["e2e_parallel_depth"] = {"seconds": extra + ref["parallel_decode"]["seconds"], "sum": True}
    if {"backbone640", "insseg_decode"} <= ref.keys():
        per_step = ref["insseg_decode"]["ms_per_step"]
        ref["e2e_insseg"] = {"seconds": ref["backbone640"]["seconds"] + per_step * 2100 / 1e3, "sum": True}
    return ref


def _fmt_row(r: dict, reference: dict[str, dict]) -> str:
    description, ref_key = BENCHES[r["name"]]
    notes = []
    if "gflops" in r:
        notes.append(f"{r['gflops']:.0f} GFLOP/s")
    if "gbytes_per_s" in r:
        notes.append(f"{r['gbytes_per_s']:.1f} GB/s")
    if "ms_per_step" in r:
        notes.append(f"{r['ms_per_step']:.2f} ms/step ({r['steps']} steps)")
    if "images_per_s" in r:
        notes.append(f"{r['images_per_s']:.3f} images/s")
    if "max_abs_difference" in r:
        notes.append(" / ".join(f"{d:.1e}" for d in r["max_abs_difference"]))
    ref = reference.get(ref_key) if ref_key else None
    ref_text, speedup = "", ""
    if ref is not None:
        if "ms_per_step" in r and "ms_per_step" in ref:
            ref_text = f"{ref['ms_per_step']:.2f} ms/step"
            speedup = f"{ref['ms_per_step'] / r['ms_per_step']:.1f}x"
        else:
            ref_text = f"{ref['seconds']:.3f} s" + (" (sum of stages)" if ref.get("sum") else "")
            speedup = f"{ref['seconds'] / r['seconds']:.1f}x"
    return (
        f"| {description} | {r['seconds']:.3f} | {', '.join(notes)} | {r['peak_rss_mb']:.0f} "
        f"| {ref_text} | {speedup} |"
    )


def report(results: list[dict], reference: dict[str, dict], threads: int, load: float) -> str:
    import torch

    by_name = {r["name"]: r for r in results}
    lines = [
        f"Machine: {_cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"torch.set_num_threads({threads}), fp32; load average {load:.2f} before the run",
        "",
        "| benchmark | seconds (median) | rate | peak RSS MB | original | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_fmt_row(r, reference) for r in results]
    lines.append("")

    def ratio(a: str, b: str, text: str) -> None:
        if a in by_name and b in by_name:
            lines.append(f"- {text}: {by_name[a]['seconds'] / by_name[b]['seconds']:.2f}x")

    def batch_gain(name: str) -> None:  # images/s at batch 8 over batch 1 (same number of steps)
        b1, b8 = by_name.get(f"{name}_b1"), by_name.get(f"{name}_b8")
        if b1 and b8:
            lines.append(
                f"- {name}: images/s at batch 8 / batch 1 = {8 * b1['seconds'] / b8['seconds']:.2f}x"
            )

    if "matmul" in by_name:
        rate = by_name["matmul"]["gflops"]
        for name in ("backbone480_eager_b1", "backbone480_sdpa_b1", "backbone480_sdpa_b8"):
            if name in by_name:
                share = by_name[name]["gflops"] / rate
                lines.append(
                    f"- {name}: {by_name[name]['gflops']:.0f} GFLOP/s = {share:.0%} of the matmul rate"
                )
    ratio(
        "e2e_parallel_depth480_b1",
        "depth_anything_vitb_476",
        "AiT-P depth 480 end to end / Depth Anything ViT-B 476",
    )
    ratio(
        "e2e_depth480_b1",
        "depth_anything_vitb_476",
        "AiT depth (AR) 480 end to end / Depth Anything ViT-B 476",
    )
    ratio("e2e_parallel_depth480_b1", "glpn_480", "AiT-P depth 480 end to end / GLPN 480")
    ratio(
        "e2e_insseg640_b1",
        "mask2former_swinb_640",
        "AiT instance seg. 640 end to end / Mask2Former Swin-B 640",
    )
    for name in ("insseg_decode", "depth_decode", "parallel_decode"):
        batch_gain(name)
    for name in ("insseg_decode", "depth_decode", "insseg_decode_full", "e2e_depth480", "e2e_insseg640"):
        # decode_compiled applies at batch 1 only
        ratio(f"{name}_b1_compiled", f"{name}_b1", f"{name}: decode_compiled / eager time at batch 1")
    if "memory" in by_name:
        bandwidth = by_name["memory"]["gbytes_per_s"]
        for r in results:
            if "bytes_per_step" in r:
                floor_ms = r["bytes_per_step"] / bandwidth / 1e6
                lines.append(
                    f"- {r['name']}: {r['ms_per_step']:.2f} ms/step (encoder included) against "
                    f"{r['bytes_per_step'] / 1e6:.1f} MB a step read at {bandwidth:.1f} GB/s = {floor_ms:.2f} ms "
                    f"({floor_ms / r['ms_per_step']:.0%} of the streaming rate)"
                )
    for name in ("insseg_decode", "depth_decode"):
        b1, b8 = by_name.get(f"{name}_b1"), by_name.get(f"{name}_b8_threads")
        if b1 and b8:
            lines.append(
                f"- {name}: images/s at batch 8 (all threads) / batch 1 = {8 * b1['seconds'] / b8['seconds']:.2f}x"
            )
    return "\n".join(lines)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--insseg-steps", type=int, default=210, help="time this prefix of the 2100 steps")
    parser.add_argument("--only", nargs="*", choices=list(BENCHES))
    parser.add_argument("--original-json", help="timings of the original (time_original.py --json)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--markdown", help="write the table here")
    parser.add_argument("--from-json", help="print the table of an earlier --json file instead of measuring")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args.child, args.threads, args.runs, args.insseg_steps)))
        return 0
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        print(
            report(
                saved["results"],
                original_reference(args.original_json),
                saved["threads"],
                saved["load_before"],
            )
        )
        return 0
    load = os.getloadavg()[0]
    reference = original_reference(args.original_json)
    results = []
    for name in args.only or BENCHES:
        cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads), "--runs", str(args.runs),
               "--insseg-steps", str(args.insseg_steps)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(_fmt_row(results[-1], reference), flush=True)
    text = report(results, reference, args.threads, load)
    print("\n" + text + f"\nload average after the run: {os.getloadavg()[0]:.2f}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + f"\nload average after the run: {os.getloadavg()[0]:.2f}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "load_before": load, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
