"""Steady-state time per image of the NumPy postprocess (``numpy_nms`` alone, and
``postprocess_numpy``: NMS, boxes mapped back, ``Detections``) on the baseline's ONNX raw heads of
the val images, optionally against the same functions at another git revision.

    nice -n 19 python scripts/measure_nms.py [--val-images 40] [--blocks 6] [--against REV]
    nice -n 19 python scripts/measure_nms.py --crossover


``--against REV`` loads ``runtimes/postprocess.py`` and ``runtimes/preprocess.py`` as they were at
``REV`` (``git show``, run from the repository) into a temporary directory, checks that they give
the same bytes on every head, and alternates their blocks with today's (perf.timing.BlockPlan,
A B B A ...), cycling through the images call by call. The ratio is the revision's over today's
paired block medians (median over blocks), so above 1 means today's is faster. Prints one JSON document.

``--crossover`` instead times the two greedy passes ``numpy_nms`` chooses between by ``MATRIX_MAX``
(``_keep_by_matrix``, ``_keep_by_loop``) on synthetic crowded candidates: K boxes jittered around 1
or 4 objects, three classes, iou 0.7; the best of 7 repeats of 20 calls each. Prints one JSON line
per K and object count.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from detbench.paths import configure_environment

RUNTIMES = "src/detbench/runtimes"


def _module_at(rev: str, folder: Path) -> ModuleType:
    """``runtimes.postprocess`` at ``rev``, importing ``runtimes.preprocess`` at ``rev`` too."""
    for name in ("preprocess", "postprocess"):
        text = subprocess.run(
            ["git", "show", f"{rev}:{RUNTIMES}/{name}.py"], check=True, capture_output=True, text=True
        ).stdout
        old = "from detbench.runtimes.preprocess import"
        if name == "postprocess":
            if old not in text:
                raise SystemExit(f"{rev}: postprocess.py does not import preprocess as expected")
            text = text.replace(old, "from _at_rev_preprocess import")
        (folder / f"_at_rev_{name}.py").write_text(text)
    sys.path.insert(0, str(folder))
    return importlib.import_module("_at_rev_postprocess")


def _best_us(fn: Callable, *args: object) -> float:
    """Microseconds per call: the best of 7 repeats of 20 calls."""
    import timeit

    return round(min(timeit.repeat(lambda: fn(*args), number=20, repeat=7)) / 20 * 1e6, 1)


def _crossover() -> None:
    from detbench.runtimes.postprocess import MAX_WH, _keep_by_loop, _keep_by_matrix

    rng = np.random.default_rng(0)
    for k in (32, 64, 96, 128, 192, 256):
        for objects in (1, 4):
            centres = rng.uniform(100, 500, (objects, 2))
            which = rng.integers(0, objects, k)
            xy = centres[which] + rng.normal(0, 2, (k, 2))
            half = rng.uniform(40, 45, (k, 2))
            boxes = (np.concatenate([xy - half, xy + half], axis=1) + (which % 3)[:, None] * MAX_WH).astype(
                np.float32
            )
            xyxy = np.ascontiguousarray(boxes[np.argsort(-rng.uniform(0.3, 1, k), kind="stable")].T)
            areas = (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1])
            kept = _keep_by_loop(xyxy, areas, 0.7, 300)
            if _keep_by_matrix(xyxy, areas, 0.7, 300) != kept:
                raise SystemExit(f"K={k}: the matrix and the loop keep different boxes")
            us = {fn.__name__: _best_us(fn, xyxy, areas, 0.7, 300) for fn in (_keep_by_matrix, _keep_by_loop)}
            print(json.dumps({"candidates": k, "kept": len(kept), "us": us}))


def _cycling(fn: Callable, args: Sequence[tuple]) -> Callable[[], object]:
    it = itertools.cycle(args)
    return lambda: fn(*next(it))


def main(argv: Sequence[str] | None = None) -> None:
    configure_environment()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-images", type=int, default=40)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--against", metavar="REV", help="a git revision to compare with")
    parser.add_argument("--crossover", action="store_true", help="matrix vs loop NMS pass by candidate count")
    args = parser.parse_args(argv)
    if args.crossover:
        _crossover()
        return

    from detbench.data.datasets import load_dataset
    from detbench.data.images import load_image
    from detbench.model.baseline import resolve_weights, synthetic_dataset
    from detbench.perf.timing import BlockPlan, block_medians
    from detbench.runtimes import postprocess as today
    from detbench.runtimes.preprocess import preprocess
    from detbench.runtimes.workbench import Workbench

    data = synthetic_dataset()
    bench = Workbench.from_options(resolve_weights(None), data, threads=1)
    model = bench.load("onnxruntime")
    names = tuple(bench.names)
    heads = []
    for path in load_dataset(data).images("val")[: args.val_images]:
        x, infos = preprocess([np.asarray(load_image(path))], bench.imgsz)
        heads.append((np.asarray(model.run(x)), infos))
    modules = {"today": today}
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            modules[args.against] = old = _module_at(args.against, Path(tmp))
            for raw, infos in heads:
                a, b = old.postprocess_numpy(raw, infos, names), today.postprocess_numpy(raw, infos, names)
                same = all(
                    x.xyxy.tobytes() == y.xyxy.tobytes()
                    and x.scores.tobytes() == y.scores.tobytes()
                    and x.class_ids.tobytes() == y.class_ids.tobytes()
                    for x, y in zip(a, b)
                )
                if not same or old.numpy_nms(raw)[0].tobytes() != today.numpy_nms(raw)[0].tobytes():
                    raise SystemExit(f"{args.against} and today's give different output")
        plan = BlockPlan(blocks=args.blocks, block_calls=200, discard=20)
        result = {
            "imgsz": bench.imgsz,
            "images": len(heads),
            "plan": plan.to_dict(),
            "candidates_per_image": float(np.mean([(r[0, 4:].max(0) > today.CONF).sum() for r, _ in heads])),
            "kept_per_image": float(np.mean([len(today.numpy_nms(r)[0]) for r, _ in heads])),
        }
        for label, call in {
            "numpy_nms": lambda m: lambda raw, infos: m.numpy_nms(raw),
            "postprocess_numpy": lambda m: lambda raw, infos: m.postprocess_numpy(raw, infos, names),
        }.items():
            samples = plan.steady_state([_cycling(call(m), heads) for m in modules.values()])
            out = {k: {"median_us": round(float(np.median(s)) * 1e6, 1)} for k, s in zip(modules, samples)}
            if args.against:
                ratio = block_medians(samples[1], plan.blocks) / block_medians(samples[0], plan.blocks)
                out["rev_over_today"] = round(float(np.median(ratio)), 3)
                out["ratio_blocks_min_max"] = [round(float(ratio.min()), 3), round(float(ratio.max()), 3)]
            result[label] = out
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
