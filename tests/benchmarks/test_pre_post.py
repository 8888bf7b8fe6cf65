"""Pre- and postprocessing timed on their own, so the end-to-end budget per image is visible:
end-to-end = preprocess + backend latency + postprocess (same image and size in each group)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from detbench.plugin.fixtures import WARMUP_CALLS
from detbench.runtimes.postprocess import CONF, postprocess
from detbench.runtimes.preprocess import preprocess

from .conftest import ASSETS

pytestmark = [pytest.mark.benchmark(group="pre/post-processing")]
BUS = ASSETS / "bus.jpg"


def _time(benchmark, fn: Callable, *args):
    """Warm up (file cache, lazy imports) only when timing, then time ``fn(*args)``."""
    if not benchmark.disabled:
        for _ in range(WARMUP_CALLS):
            fn(*args)
    result = benchmark(fn, *args)
    from detbench.perf.gate import percentile_extra_info

    benchmark.extra_info.update(percentile_extra_info(benchmark))
    return result


@pytest.mark.parametrize(
    ("image", "imgsz"),
    [("synthetic", 128), ("bus", 128), ("bus", 640)],
    ids=["synthetic-128", "bus-128", "bus-640"],
)
def test_preprocess_load_letterbox(benchmark, dataset, image: str, imgsz: int) -> None:
    """Decode from disk, letterbox and normalise one image (what a deployment does per request)."""
    path: Path = dataset.images("val")[0] if image == "synthetic" else BUS
    benchmark.extra_info.update({"image": path.name, "imgsz": imgsz, "bytes": path.stat().st_size})
    x, infos = _time(benchmark, preprocess, [path], imgsz)
    assert x.shape == (1, 3, imgsz, imgsz)
    assert len(infos) == 1


@pytest.fixture(scope="module", params=[("synthetic", 128), ("bus", 640)], ids=["synthetic-128", "bus-640"])
def raw_head(request: pytest.FixtureRequest, dataset, workbench, workbench_640):
    """A real raw head output of the baseline (eager PyTorch) for one image, and its letterbox info."""
    image, imgsz = request.param
    path = dataset.images("val")[0] if image == "synthetic" else BUS
    bench = workbench if imgsz == workbench.imgsz else workbench_640
    x, infos = preprocess([path], imgsz)
    return bench.load("pytorch").run(x), infos


def test_postprocess_nms(benchmark, raw_head, model_info) -> None:
    """ultralytics NMS and un-letterboxing of one raw head output."""
    raw, infos = raw_head
    candidates = int((raw[:, 4:, :].max(axis=1) > CONF).sum())
    benchmark.extra_info.update(
        {"imgsz": infos[0].new_shape[0], "anchors": raw.shape[2], "candidates_over_conf": candidates}
    )
    dets = _time(benchmark, postprocess, raw, infos, model_info.names)
    assert len(dets) == 1
    assert len(dets[0]) <= candidates
    assert np.isfinite(dets[0].xyxy).all()
