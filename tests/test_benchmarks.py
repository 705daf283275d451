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
