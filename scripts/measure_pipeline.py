"""Steady-state time per call of each registered preprocess and postprocess variant against its
stage's reference, on ultralytics' zidane.jpg (1280x720) and on val images, at the baseline's imgsz.

    nice -n 19 python scripts/measure_pipeline.py [--val-images 40] [--blocks 6]

Images are decoded once beforehand (decode is its own stage); the postprocess variants get the
baseline's raw heads for the same images (eager PyTorch). Each workload alternates its variants'
blocks (perf.timing.BlockPlan.steady_state, A B B A ...), cycling through the images call by call;
the ratio is reference / variant of the paired block medians (median over blocks), so above 1 means
the variant is faster. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable, Sequence

import numpy as np

from detbench.paths import configure_environment


def _cycling(fn: Callable, args: Sequence[tuple]) -> Callable[[], object]:
    it = itertools.cycle(args)
    return lambda: fn(*next(it))


def _compare(stage: str, args: Sequence[tuple], plan) -> dict:
    from detbench.perf.timing import block_medians
    from detbench.runtimes import pipeline

    vs = pipeline.variants(stage)
    samples = plan.steady_state([_cycling(v.make(), args) for v in vs])
    ref_blocks = block_medians(samples[0], plan.blocks)
    out = {}
    for v, s in zip(vs, samples):
        ratio = ref_blocks / block_medians(s, plan.blocks)
        out[v.name] = {
            "median_us": round(float(np.median(s)) * 1e6, 1),
            "reference_over_this": round(float(np.median(ratio)), 3),
            "ratio_blocks_min_max": [round(float(ratio.min()), 3), round(float(ratio.max()), 3)],
        }
    return out


def main(argv: Sequence[str] | None = None) -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-images", type=int, default=40)
    parser.add_argument("--blocks", type=int, default=6)
    args = parser.parse_args(argv)

    import torch
    from ultralytics.utils import ASSETS

    from detbench.data.datasets import load_dataset
    from detbench.data.images import load_image
    from detbench.model.baseline import resolve_weights, synthetic_dataset
    from detbench.perf.timing import BlockPlan
    from detbench.runtimes.postprocess import ultralytics_nms
    from detbench.runtimes.preprocess import preprocess
    from detbench.runtimes.workbench import Workbench

    ultralytics_nms()  # torchvision imported, as the reference postprocess runs
    data = synthetic_dataset()
    bench = Workbench.from_options(resolve_weights(None), data, threads=1)
    model = bench.load("pytorch")
    imgsz = bench.imgsz
    sets = {
        "zidane 1280x720": [np.asarray(load_image(ASSETS / "zidane.jpg"))],
        f"val ({args.val_images} images)": [
            np.asarray(load_image(p)) for p in load_dataset(data).images("val")[: args.val_images]
        ],
    }
    plan = BlockPlan(blocks=args.blocks, block_calls=25, discard=5)
    names = bench.names
    result = {"imgsz": imgsz, "plan": plan.to_dict(), "torch_threads": torch.get_num_threads(), "stages": {}}
    for label, rgbs in sets.items():
        pre_args = [(rgb, imgsz) for rgb in rgbs]
        heads = []
        for rgb in rgbs:
            x, infos = preprocess([rgb], imgsz)
            heads.append((model.run(x), infos, names))
        result["stages"][label] = {
            "preprocess": _compare("preprocess", pre_args, plan),
            "postprocess": _compare("postprocess", heads, plan),
            "detections_per_image": float(np.mean([len(d) for h in heads for d in _dets(h)])),
        }
    print(json.dumps(result, indent=2))


def _dets(head: tuple) -> list:
    from detbench.runtimes.postprocess import postprocess

    return postprocess(*head)


if __name__ == "__main__":
    main()
