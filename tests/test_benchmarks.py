"""The inference benchmark script works: it runs a case in a child process and reports saved results.

It is a script that prints figures, not a timed test: these tests check that it runs and that its table and
ratios are computed from the measured values, never how fast anything is.
"""

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).parent / "benchmarks"
RESULTS = BENCHMARKS / "results"


def _bench_inference():
    spec = importlib.util.spec_from_file_location("bench_inference", BENCHMARKS / "bench_inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_a_case_in_a_child_process(tmp_path):
    bench = _bench_inference()
    out = tmp_path / "out.json"
    assert bench.main(["--only", "matmul", "--runs", "1", "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["name"] == "matmul"
    assert result["gflops"] > 0 and result["seconds"] > 0 and result["peak_rss_mb"] > 0


def test_benchmark_report_of_saved_results(capsys):
    """`--from-json` prints a row for every saved case and the ratios the README quotes, from the saved figures."""
    bench = _bench_inference()
    saved_path = RESULTS / "inference_cpu2_2026-11-24_s9_compiled_matvec.json"
    saved = {r["name"]: r for r in json.loads(saved_path.read_text())["results"]}
    original = RESULTS / "original_cpu2_2026-11-24.json"
    assert bench.main(["--from-json", str(saved_path), "--original-json", str(original)]) == 0
    text = capsys.readouterr().out
    for name in saved:
        assert bench.BENCHES[name][0] in text
    compiled, eager = saved["depth_decode_b1_compiled"], saved["depth_decode_b1"]
    expected = compiled["seconds"] / eager["seconds"]
    assert f"depth_decode: decode_compiled / eager time at batch 1: {expected:.2f}x" in text
    assert f"{compiled['ms_per_step']:.2f} ms/step (225 steps)" in text
    b1, b8 = saved["depth_decode_b1"], saved["depth_decode_b8"]
    assert f"depth_decode: images/s at batch 8 / batch 1 = {8 * b1['seconds'] / b8['seconds']:.2f}x" in text


def test_benchmark_measures_memory_bandwidth(tmp_path):
    bench = _bench_inference()
    out = tmp_path / "out.json"
    assert bench.main(["--only", "memory", "--runs", "1", "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["gbytes_per_s"] > 0 and result["seconds"] > 0


def test_decode_bytes_per_step_counts_what_a_step_reads():
    """The traffic model behind the bandwidth floor: per step every decoder weight a step uses (not the
    cross-attention key/value projections, applied once per image) and the slot's vocabulary rows; per image the
    memory's keys/values and the self-attention cache of the positions so far (checked against the modules)."""
    from test_modeling import tiny_config

    from ait_hf import AiTForDepthAndInstanceSegmentation

    bench = _bench_inference()
    config = tiny_config()
    decoder = AiTForDepthAndInstanceSegmentation(config).decoder
    per_step = [
        p.numel()
        for layer in decoder.layers
        for name, p in layer.named_parameters()
        if not name.startswith(("cross_attn.k_proj", "cross_attn.v_proj"))
    ]
    weights = sum(per_step) + sum(p.numel() for p in decoder.final_layer_norm.parameters())
    d, vocab = config.d_model, config.vocabulary
    depth_rows = vocab.depth_range()[1] - vocab.depth_range()[0]
    steps = 9
    per_image = (
        len(decoder.layers) * 2 * d * (config.encoder_grid[0] * config.encoder_grid[1] + (steps + 1) / 2)
    )
    expected = 4 * (weights + depth_rows * (d + 1) + 3 * per_image)
    assert bench.decode_bytes_per_step(config, "depth", 3, steps) == expected
    # object sequences: box bins on 4 slots of each object, the classes on 1, mask codes on the rest (none in detection)
    box, classes, masks = (
        end - start for start, end in (vocab.box_range(), vocab.class_range(), vocab.mask_range())
    )
    length = config.object_length("instance_segmentation")
    mean_rows = (4 * box + classes + (length - 5) * masks) / length
    expected = 4 * (weights + mean_rows * (d + 1) + per_image)
    assert bench.decode_bytes_per_step(config, "instance_segmentation", 1, steps) == expected
    expected = 4 * (weights + (4 * box + classes) / 5 * (d + 1) + per_image)
    assert bench.decode_bytes_per_step(config, "detection", 1, steps) == expected


def test_benchmark_report_of_the_bandwidth_floor(capsys):
    """Each decode row with a traffic estimate is set against the measured streaming rate of the same run."""
    bench = _bench_inference()
    saved_path = RESULTS / "inference_cpu2_2026-11-25_s11_bandwidth_run1.json"
    saved = json.loads(saved_path.read_text())["results"]
    assert bench.main(["--from-json", str(saved_path)]) == 0
    text = capsys.readouterr().out
    bandwidth = [r for r in saved if r["name"] == "memory"][-1]["gbytes_per_s"]  # the report keeps the last
    decode_rows = [r for r in saved if "bytes_per_step" in r]
    assert decode_rows
    for r in decode_rows:
        floor_ms = r["bytes_per_step"] / bandwidth / 1e6
        assert (
            f"- {r['name']}: {r['ms_per_step']:.2f} ms/step (encoder included) against "
            f"{r['bytes_per_step'] / 1e6:.1f} MB a step read at {bandwidth:.1f} GB/s = {floor_ms:.2f} ms"
        ) in text
