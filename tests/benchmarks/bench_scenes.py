"""Throughput of the synthetic scene generator, one process (scenes/s and scenes/min).

Times rendering alone (`render_scene`), and rendering plus writing both on-disk layouts (NYUv2 JPEG + uint16
PNG, COCO JPEG + compressed-RLE json) with `write_synthetic_scenes`, to a temporary folder. Not a test:

    python tests/benchmarks/bench_scenes.py [--scenes 300] [--sizes 192 128] [--write-scenes 200] [--workers 0 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from ait_hf.data.scenes import SceneConfig, render_scene, scene_seed, write_synthetic_scenes


def render_rate(count: int, size: int, config: SceneConfig) -> tuple[float, float]:
    """Scenes per second rendering ``count`` scenes of ``size`` x ``size`` pixels (after one warm-up), by
    wall-clock time and by this process's CPU time (the latter is what an idle core would give when other
    jobs share the machine)."""
    render_scene(scene_seed(0, "train", count), size, config)
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        render_scene(scene_seed(0, "train", index), size, config)
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def write_rate(count: int, size: int, workers: int) -> float:
    """Scenes per second rendering and writing ``count`` scenes to both layouts (each scene once)."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_synthetic_scenes(folder, nyu_train=count, coco_train=count, size=size, seed=0, workers=workers)
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=300, help="scenes rendered per timing")
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 128])
    parser.add_argument("--write-scenes", type=int, default=200, help="scenes written (0: skip)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 1], help="rendering processes while writing"
    )
    args = parser.parse_args()
    for size in args.sizes:
        for name, config in (("shadows", SceneConfig()), ("no shadows", SceneConfig(shadows=False))):
            rate, cpu_rate = render_rate(args.scenes, size, config)
            print(
                f"render {size}x{size} ({name}): {rate:7.1f} scenes/s = {60 * rate:7.0f} scenes/min "
                f"(per CPU second: {cpu_rate:.1f} scenes/s)"
            )
    if args.write_scenes:
        for size in args.sizes:
            for workers in args.workers:
                rate = write_rate(args.write_scenes, size, workers)
                print(
                    f"render + write NYUv2 and COCO {size}x{size}, {workers} render workers: "
                    f"{rate:7.1f} scenes/s = {60 * rate:7.0f} scenes/min"
                )


if __name__ == "__main__":
    main()
