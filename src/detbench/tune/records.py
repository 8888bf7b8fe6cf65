"""tune.json as records: what ``detbench tune`` writes, typed and documented field by field.

``tune.search.run_search`` builds a ``Tune`` from the search's results and keeps its JSON form
(``TuneResult.doc``), which the renderers and ``report --tune-json`` read; ``docs/schemas.md`` and the
schema test come from these types (``detbench.schema``). Times in ms, sizes in MB = 1e6 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detbench.jsonsafe import json_safe
from detbench.schema import doc, markdown

SCHEMA = 2  # 2: the pipeline search (photos, pipelines, recommended_pipeline)


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    weights: str = doc("the weights searched")
    weights_sha256: str = doc("sha256 of the weights file")
    data: str = doc("the dataset's data.yaml")
    imgsz: int = doc("input size in pixels")
    val_images: int | None = doc("val images mAP is scored on; null: latency only (no accuracy)")
    verify_images: int = doc("val images of the raw-head and detection comparisons")
    blocks: int = doc("alternated blocks of the timing run (perf.timing.BlockPlan)")
    block_calls: int = doc("calls per block, the dropped ones included")
    discard: int = doc("calls dropped at each block's start")
    accuracy: bool = doc("mAP was scored (false: --latency-only)")
    overrides: dict[str, str] = doc("{backend: the user's own artifact} (--artifact)")
    points: int = doc("configurations searched")


@dataclass(frozen=True, kw_only=True)
class Environment:
    cpu_model: str = doc("CPU model from /proc/cpuinfo")
    cpu_flags: list[str] = doc("the SIMD and matrix flags detbench looks at")
    machine_id: str = doc("the machine class (perf.machine.machine_id), the budgets entry's key")
    usable_cores: int = doc("CPUs this process may run on")
    platform: str = doc("platform.platform()")
    versions: dict[str, str] = doc(
        "python, detbench, torch, ultralytics, onnx, onnxruntime, onnxslim, openvino"
    )


@dataclass(frozen=True, kw_only=True)
class ReferenceAccuracy:
    mAP50: float = doc("eager PyTorch's mAP at IoU 0.5")
    mAP50_95: float = doc("its mAP at IoU 0.5:0.95", key="mAP50-95")
    images: int = doc("val images scored")


@dataclass(frozen=True, kw_only=True)
class Reference:
    backend: str = doc("what every candidate must reproduce (pytorch)")
    threads: int = doc("its threads (1)")
    accuracy: ReferenceAccuracy | None = doc("its accuracy; null when not scored")


@dataclass(frozen=True, kw_only=True)
class Deviation:
    box_max_abs: float = doc(
        "largest box-channel difference from the reference's raw head, input pixels (end2end: largest "
        "box-corner difference over detections matched with its reference's, image pixels)"
    )
    score_max_abs: float = doc("largest score-channel difference (end2end: over the matched detections)")


@dataclass(frozen=True, kw_only=True)
class Candidate:
    backend: str = doc("registered backend")
    precision: str = doc("fp32, bf16 or int8")
    threads: int = doc("its threads")
    batch: int = doc("the batch it is timed at (1)")
    dynamic_batch: bool = doc("exported with a dynamic batch (false: static)")
    label: str = doc('"backend Nt" plus " static" for a static batch')
    artifact: str | None = doc("the artifact; null when it could not be built")
    p50_ms: float | None = doc(
        "median inference latency at batch 1 (an end2end export's in-graph ranking included, NMS not); "
        "null when not timed (not verified)"
    )
    p99_ms: float | None = doc("99th percentile; null when not timed")
    first_call_ms: float | None = doc("load + first inference in a fresh process; null when not measured")
    peak_rss_mb: float | None = doc("that process's peak resident set, MB")
    base_rss_mb: float | None = doc("its resident set before loading, MB")
    size_mb: float | None = doc("artifact size")
    mAP50: float | None = doc("mAP at IoU 0.5; null when not scored")
    mAP50_95: float | None = doc("mAP at IoU 0.5:0.95; null when not scored", key="mAP50-95")
    per_class_mAP50: dict[str, float | None] | None = doc("{class: mAP50}; null when not scored")
    deviation: Deviation | None = doc(
        "raw head vs the reference (end2end: detections vs its own end2end forward's); "
        "null when it did not run"
    )
    verified: bool = doc("passed the suite's raw-head, detection and accuracy comparators")
    reason: str | None = doc("why it was not verified (or loaded); null when verified")
    pareto: bool = doc("on the Pareto front of (p50, mAP50-95, size)")


@dataclass(frozen=True, kw_only=True)
class _Indexed:
    index: int = doc("its position in candidates")


@dataclass(frozen=True, kw_only=True)
class Recommended(Candidate, _Indexed):  # _Indexed last: index is the first key
    copied_to: str | None = doc(
        "the artifact's copy in --out/recommended/ (written with the files)", optional=True
    )


@dataclass(frozen=True, kw_only=True)
class PhotoSet:
    data: str = doc("the photo-sized set's data.yaml (data.photos)")
    images: list[str] = doc("the photos every pipeline is checked and timed on, in order")
    plan: dict[str, int] = doc("the pipeline timing run's blocks, block_calls, discard")


@dataclass(frozen=True, kw_only=True)
class PipelineRow:
    config: int = doc("its backend configuration's index in candidates")
    label: str = doc('"<configuration label> decode/preprocess/postprocess"')
    decode: str = doc("decode variant (runtimes.decode.DECODERS)")
    preprocess: str = doc("preprocess variant (runtimes.pipeline)")
    postprocess: str = doc("postprocess variant (runtimes.pipeline)")
    identical: bool = doc("every stage claims the reference's output: admitted without an accuracy check")
    admitted: bool = doc("identical, or its detections on the photos within verify.decode's bounds")
    reason: str | None = doc("why it was not admitted; null when admitted")
    e2e_p50_ms: float | None = doc(
        "median per image, file path to detections in full-image pixels; null when not admitted"
    )
    e2e_p99_ms: float | None = doc("99th percentile of the same per-image times")
    inference_p50_ms: float | None = doc(
        "its backend alone on the same photos' model inputs, median per image, in the same timing run"
    )


@dataclass(frozen=True, kw_only=True)
class RecommendedPipeline(_Indexed):
    backend: str = doc("registered backend")
    threads: int = doc("its threads")
    artifact: str = doc("the artifact it runs (the weights for eager backends)")
    imgsz: int = doc("model input size")
    names: list[str] = doc("class names, in class-id order")
    decode: str = doc("decode variant")
    preprocess: str = doc("preprocess variant")
    postprocess: str = doc("postprocess variant")
    e2e_p50_ms: float = doc("its end-to-end median per image (the objective)")
    inference_p50_ms: float | None = doc("its backend alone, median per image")
    reference_e2e_p50_ms: float | None = doc(
        "the reference pipeline (pillow/reference/ultralytics) on the same configuration, same run"
    )


@dataclass(frozen=True, kw_only=True)
class Tune:
    schema: int = doc(f"the format's version ({SCHEMA})")
    created: str = doc("ISO-8601 UTC time of the search")
    settings: SearchSettings = doc("what was searched")
    environment: Environment = doc("where it ran")
    reference: Reference = doc("the reference every candidate is verified against")
    candidates: list[Candidate] = doc("every configuration, verified or not, in search order")
    pareto: list[int] = doc("indices of the Pareto front in candidates")
    recommended: Recommended | None = doc("the fastest verified candidate; null when none verified")
    photos: PhotoSet | None = doc("the pipeline search's images; null when it did not run")
    pipelines: list[PipelineRow] = doc(
        "pipeline variants x the fastest verified configurations, in search order"
    )
    recommended_pipeline: RecommendedPipeline | None = doc(
        "the admitted pipeline with the lowest end-to-end p50; null when none was timed"
    )
    notes: list[str] = doc("what was skipped or approximated")
    step_s: dict[str, float] = doc("seconds per phase: prepare_s, verify_s, time_s, cold_s, pipelines_s")
    duration_s: float = doc("wall time of the search, s")
    plot: str | None = doc("the Pareto plot's file name in --out (written with the files)", optional=True)

    def to_json(self) -> dict[str, Any]:
        """The tune.json document (before ``tune.render.write_outputs`` adds plot and copied_to)."""
        return json_safe(self)


def schema_markdown() -> str:
    """tune.json's section of ``docs/schemas.md``."""
    return markdown(
        Tune,
        "tune.json (`detbench tune`)",
        f'`"schema": {SCHEMA}`. Written by `detbench tune` into `--out`; `detbench report --tune-json` '
        "reads its recommended entry and recommended_pipeline; `detbench predict --pipeline recommended` "
        "and `detbench.load_pipeline` build its recommended_pipeline. Times in ms; sizes in MB = 1e6 bytes.",
    )
