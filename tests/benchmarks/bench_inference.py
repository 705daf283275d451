"""Inference benchmark: AiT stages at full size (random weights) beside peer models, on this machine.

    python tests/benchmarks/bench_inference.py [--threads 2] [--runs 3] [--insseg-steps 210] [--json out.json]

Every benchmark runs in its own subprocess (its peak RSS is its own) with `torch.set_num_threads`, fp32,
`torch.inference_mode`, one warm-up call and the median of `--runs` timed calls. The machine's fp32
matmul rate is measured in the same run so that figures from different machines compare by ratio.
This is a script that prints figures, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

BENCHES = [
    "matmul", "backbone480_eager", "backbone480_sdpa", "backbone640_sdpa", "depth_decode", "parallel_decode",
    "insseg_decode_b1", "insseg_decode_b8", "vqvae_decode_soft", "e2e_parallel_depth480", "e2e_depth480",
    "depth_anything_vitb_476", "glpn_480", "mask2former_swinb_640",
]  # fmt: skip


def _median_time(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _ait(preset: str, attn: str = "sdpa"):
    from ait_hf import AiTConfig, AiTForDepthAndInstanceSegmentation

    config = AiTConfig.from_original_preset(preset)
    config.backbone_config["attn_implementation"] = attn
    return AiTForDepthAndInstanceSegmentation(config).eval()


def run_one(name: str, threads: int, runs: int, insseg_steps: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    info: dict = {"name": name}
    with torch.inference_mode():
        if name == "matmul":
            a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
            seconds, _ = _median_time(lambda: [a @ b for _ in range(10)], runs)
            info["gflops"] = 10 * 2 * 1024**3 / seconds / 1e9
            seconds = seconds / 10
        elif name.startswith("backbone"):
            size = 480 if "480" in name else 640
            preset = "swinv2b_480reso_depthonly" if size == 480 else "swinv2b_640reso_inssegonly"
            model = _ait(preset, "eager" if name.endswith("eager") else "sdpa").model.backbone
            x = torch.randn(1, 3, size, size)
            seconds, _ = _median_time(lambda: model(x), runs)
        elif name in ("depth_decode", "parallel_decode"):
            preset = (
                "swinv2b_480reso_depthonly"
                if name == "depth_decode"
                else "swinv2b_480reso_parallel_depthonly"
            )
            model = _ait(preset)
            features = torch.randn(1, 1024, 15, 15)
            start, end = model.config.vocabulary.depth_range()

            def decode():
                memory = model.model.encoder(features).last_hidden_state
                if model.config.depth_parallel:
                    ids = torch.zeros((1, 224), dtype=torch.long)
                    return model.decoder.logits(
                        model.decoder(model._embed_inputs("depth", ids), memory), start, end
                    )
                return model._decode_depth_autoregressive(memory, 225, start, end, None)

            seconds, _ = _median_time(decode, runs)
            info["ms_per_step"] = seconds / 225 * 1e3
        elif name.startswith("insseg_decode"):
            batch = 8 if name.endswith("b8") else 1
            model = _ait("swinv2b_640reso_inssegonly")
            model.config.sampling_top_p = 0.3
            model.config.num_queries = max(1, insseg_steps // 21)
            features = torch.randn(batch, 1024, 20, 20)
            steps = model.config.num_queries * 21

            def decode():
                memory = model.model.encoder(features).last_hidden_state
                return model._decode_objects(
                    memory, "instance_segmentation", False, torch.Generator().manual_seed(0)
                )

            seconds, _ = _median_time(decode, runs)
            info.update(
                steps=steps, batch=batch, ms_per_step=seconds / steps * 1e3, images_per_s=batch / seconds
            )
        elif name == "vqvae_decode_soft":
            model = _ait("swinv2b_480reso_depthonly").depth_tokenizer
            logits = torch.randn(1, 225, 128)
            seconds, _ = _median_time(lambda: model.decode_soft(logits), runs)
        elif name.startswith("e2e"):
            preset = (
                "swinv2b_480reso_parallel_depthonly" if "parallel" in name else "swinv2b_480reso_depthonly"
            )
            model = _ait(preset)
            x = torch.randn(1, 3, 480, 480)
            seconds, _ = _median_time(lambda: model(x, task="depth"), runs)
        else:
            model, x = _peer(name)
            seconds, _ = _median_time(lambda: model(pixel_values=x), runs)
    info["seconds"] = seconds
    info["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
        config = DepthAnythingConfig(
            backbone_config=backbone, neck_hidden_sizes=[96, 192, 384, 768], fusion_hidden_size=128
        )
        return DepthAnythingForDepthEstimation(config).eval(), torch.randn(1, 3, 476, 476)
    if name == "glpn_480":
        return GLPNForDepthEstimation(GLPNConfig()).eval(), torch.randn(1, 3, 480, 480)
    backbone = SwinConfig(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12, image_size=384,
                          out_features=["stage1", "stage2", "stage3", "stage4"])  # fmt: skip
    config = Mask2FormerConfig(backbone_config=backbone, use_pretrained_backbone=False)
    return Mask2FormerForUniversalSegmentation(config).eval(), torch.randn(1, 3, 640, 640)


def _row(r: dict, ratio_base: dict[str, float]) -> str:
    extra = []
    if "gflops" in r:
        extra.append(f"{r['gflops']:.0f} GFLOP/s")
    if "ms_per_step" in r:
        extra.append(f"{r['ms_per_step']:.2f} ms/step")
    if "images_per_s" in r:
        extra.append(f"{r['images_per_s']:.3f} img/s")
    return f"| {r['name']} | {r['seconds']:.3f} | {r['peak_rss_mb']:.0f} | {', '.join(extra)} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--insseg-steps", type=int, default=210, help="time this prefix of the 2100 steps")
    parser.add_argument("--only", nargs="*", choices=BENCHES)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args.child, args.threads, args.runs, args.insseg_steps)))
        return 0
    results = []
    for name in args.only or BENCHES:
        cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads), "--runs", str(args.runs),
               "--insseg-steps", str(args.insseg_steps)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(_row(results[-1], {}), flush=True)
    by_name = {r["name"]: r for r in results}
    print("\n| benchmark | seconds (median) | peak RSS MB | notes |\n|---|---|---|---|")
    for r in results:
        print(_row(r, {}))
    if "e2e_parallel_depth480" in by_name and "depth_anything_vitb_476" in by_name:
        ratio = by_name["e2e_parallel_depth480"]["seconds"] / by_name["depth_anything_vitb_476"]["seconds"]
        print(f"\nAiT-P SwinV2-B 480 end to end / Depth Anything ViT-B 476: {ratio:.2f}x")
    if "insseg_decode_b1" in by_name and "insseg_decode_b8" in by_name:
        speedup = by_name["insseg_decode_b8"]["images_per_s"] / by_name["insseg_decode_b1"]["images_per_s"]
        print(f"instance decode, images/s batch 8 / batch 1: {speedup:.2f}x")
    if "matmul" in by_name and "backbone480_sdpa" in by_name:
        rate = 190e9 / by_name["backbone480_sdpa"]["seconds"] / 1e9  # SwinV2-B 480x480 is about 190 GFLOP
        print(
            f"backbone 480 (sdpa): {rate:.0f} GFLOP/s = {rate / by_name['matmul']['gflops']:.0%} of the matmul rate"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
