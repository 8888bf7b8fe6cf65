"""report.json as records: the frozen dataclasses ``report.build.build_report`` returns.

Every key of report.json is a field here, in the file's order, with its JSON type (its annotation)
and a one-line description; ``detbench.schema`` turns them into the JSON (``Report.to_json``), the
schema documentation (``docs/schemas.md``) and the schema test. The file format is a public contract
(``"schema": 1``; ``report --compare`` reads older files): a key is renamed only with a new schema.
Times are in ms unless a name says otherwise; sizes in bytes, MB = 1e6 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detbench.jsonsafe import json_safe
from detbench.perf.peak import GemmRun
from detbench.schema import doc, markdown

SCHEMA = 1


@dataclass(frozen=True, kw_only=True)
class Settings:
    weights: str = doc("the weights scored (a .pt checkpoint)")
    weights_sha256: str = doc("sha256 of the weights file")
    data: str = doc("the dataset's data.yaml")
    imgsz: int = doc("input size in pixels (square)")
    threads: int = doc("--threads: the runtimes' intra-op threads")
    batch: int = doc("the throughput run's batch")
    val_images: int = doc("val images scored (all of the split when not limited)")
    rounds: int = doc("kept latency calls per backend at batch 1")
    warmup: int = doc("calls dropped at each block's start")
    throughput_rounds: int = doc("kept throughput calls per backend")
    deviation_images: int = doc("val images of the deviation and tolerance checks")
    quick: bool = doc("--quick: fewer images and rounds")
    full: bool | None = doc(
        "--full: throughput, latency by threads, first calls and the GEMM roofline measured too (absent "
        "in files from before the flag, which measured them always)",
        optional=True,
    )
    backends: list[str] = doc("the backends in this report, pytorch first")
    thread_columns: list[int] = doc("thread counts of latency_by_threads (1, all usable cores, --threads)")


@dataclass(frozen=True, kw_only=True)
class Environment:
    cpu_model: str = doc("CPU model from /proc/cpuinfo (unknown when absent)")
    cpu_flags: list[str] = doc("the SIMD and matrix flags detbench looks at, from /proc/cpuinfo")
    logical_cpus: int = doc("logical CPUs of the machine")
    usable_cpus: int = doc("CPUs this process may run on (its affinity mask)")
    load_average: list[float] = doc("load average over 1, 5 and 15 min")
    threads: int = doc("--threads")
    platform: str = doc("platform.platform()")
    versions: dict[str, str] = doc(
        "python, detbench, torch, ultralytics, onnx, onnxruntime, onnxslim, openvino: version or absent"
    )
    git_commit: str | None = doc("HEAD of the git checkout detbench ran in; null outside one")
    machine_id: str = doc("the machine class (perf.machine.machine_id; DETBENCH_MACHINE_ID overrides)")


@dataclass(frozen=True, kw_only=True)
class Model:
    gflops: float | None = doc("GFLOPs per image at imgsz; null when ultralytics cannot count them")
    parameters: int = doc("parameter count")


@dataclass(frozen=True, kw_only=True)
class Isa:
    flags: list[str] = doc("the CPU's AVX2/AVX-512/AMX/VNNI/FMA flags")
    bf16: bool = doc("native bf16: a bf16 peak is measured")
    bf16_reason: str = doc("why bf16 is or is not measured")
    int8_reason: str = doc("how int8 dot products run on this CPU")


@dataclass(frozen=True, kw_only=True)
class Peak:
    n: int | None = doc("the fp32 peak's GEMM size at --threads; null when no fp32 GEMM ran")
    sizes: list[int] = doc("GEMM sizes tried")
    threads: int = doc("--threads")
    repeats: int = doc("timed runs per GEMM in each pass (best kept)")
    best_s: float | None = doc("the fp32 peak's best time, s")
    gflops_per_s: float | None = doc("the fp32 peak at --threads, GFLOP/s")
    library: str | None = doc('the fp32 peak\'s runtime ("<runtime> fp32 MatMul")')
    candidates: dict[str, float | None] = doc(
        'best GFLOP/s per "runtime precision @threads" at --threads over sizes and both passes; '
        "null: not measured"
    )
    peaks: dict[str, dict[str, float | None]] = doc("{precision: {threads: best GFLOP/s (GOP/s for int8)}}")
    isa: Isa = doc("which precisions get a peak on this CPU, and why (perf.peak.isa_choice)")
    runs: list[GemmRun] = doc("every GEMM tried, with the reason when not measured (perf.peak)")


@dataclass(frozen=True, kw_only=True)
class Deviation:
    images: int = doc("val images compared")
    max_abs: float = doc(
        "largest absolute difference from eager PyTorch's raw head output (a backend without a raw "
        "head, end2end: over its detections matched with the model's own end2end forward's)"
    )
    box_max_abs: float = doc(
        "the same over the box channels, input pixels (end2end: box corners, image pixels)"
    )
    score_max_abs: float = doc("the same over the score channels, probability")


@dataclass(frozen=True, kw_only=True)
class ClassAccuracy:
    precision: float | None = doc("precision; null: the class is absent from the split")
    recall: float | None = doc("recall; null: absent")
    mAP50: float | None = doc("mAP at IoU 0.5; null: absent")
    mAP50_95: float | None = doc("mAP at IoU 0.5:0.95; null: absent", key="mAP50-95")


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    mAP50: float = doc("mAP at IoU 0.5 (ultralytics' metric code)")
    precision: float = doc("precision")
    recall: float = doc("recall")
    per_class: dict[str, ClassAccuracy] = doc("{class name: its metrics}")
    images: int = doc("val images scored")
    mAP50_95: float = doc("mAP at IoU 0.5:0.95", key="mAP50-95")
    source: str | None = doc(
        '"measured": scored in this run; "reused": an earlier run\'s record for the same artifact, '
        "data, settings, versions and CPU ISA (verify.accuracy_cache; --remeasure-accuracy scores "
        "again); absent in older files",
        optional=True,
    )
    measured_at: str | None = doc(
        "ISO-8601 UTC time the figures were scored (the earlier run's when reused); absent in older files",
        optional=True,
    )


@dataclass(frozen=True, kw_only=True)
class Latency:
    batch: int = doc("images per call (1, or a fixed-batch artifact's batch)")
    rounds: int = doc("kept calls")
    blocks: int = doc("alternated blocks (perf.timing.BlockPlan)")
    block_calls: int = doc("calls per block, the dropped ones included")
    discard: int = doc("calls dropped at each block's start")
    p50: float = doc("median per call, ms")
    p90: float = doc("90th percentile, ms")
    p99: float = doc("99th percentile, ms")
    mean: float = doc("mean, ms")
    samples: list[float] = doc("every kept call in ms, block after block (for report --compare)")


@dataclass(frozen=True, kw_only=True)
class Speedup:
    ratio: float = doc(
        "pytorch / this per image: exp of the Hodges-Lehmann estimate of the log ratios of paired "
        "(side-by-side) block medians"
    )
    ci_low: float = doc("the ratio's paired BCa bootstrap interval, low end")
    ci_high: float = doc("its high end")
    confidence: float = doc("the interval's confidence (0.95)")


@dataclass(frozen=True, kw_only=True)
class Throughput:
    batch: int = doc("--batch")
    rounds: int = doc("kept calls (0: not measured)")
    images_per_s: float | None = doc("batch / median call time; null: fixed-batch artifact")
    p50_ms: float | None = doc("median call time at batch, ms; null: not measured")
    reason: str | None = doc("why not measured; null when measured")


@dataclass(frozen=True, kw_only=True)
class ThreadLatency:
    p50: float = doc("median per call, ms")
    p90: float = doc("90th percentile, ms")
    p99: float = doc("99th percentile, ms")
    rounds: int = doc("kept calls")
    batch: int = doc("images per call")


@dataclass(frozen=True, kw_only=True)
class Stages:
    images: int = doc("images timed one at a time (0: not measured)")
    warm_passes: int | None = doc(
        "timed passes over the images per backend after a cold first pass, alternated between "
        "backends (perf.pipeline_timing); the medians below are over them (absent in files from "
        "before: those timed one cold pass)",
        optional=True,
    )
    decode_ms: float | None = doc("median decode of the file to RGB (absent in older files)", optional=True)
    preprocess_ms: float | None = doc("median letterbox + normalize (absent in older files)", optional=True)
    decode_preprocess_ms: float | None = doc("median decode + letterbox + normalize", optional=True)
    inference_ms: float | None = doc("median backend call", optional=True)
    postprocess_ms: float | None = doc(
        "median NMS into detections (end2end: thresholding and un-letterboxing, no NMS)", optional=True
    )
    end_to_end_ms: float | None = doc("median of the four stages' sum per image", optional=True)
    cold_end_to_end_ms: float | None = doc(
        "median end to end of the first pass, apart from the warm ones (absent in older files)",
        optional=True,
    )
    reason: str | None = doc("why not measured (the stage keys are then absent); null when measured")


@dataclass(frozen=True, kw_only=True)
class PipelineVariants:
    source: str = doc(
        '"tune.json": --tune-json\'s recommended_pipeline; "identical variants": without it, each '
        "stage's first registered variant other than the reference that claims identical output "
        "(runtimes.pipeline.identical_alternative)"
    )
    tune_json: str | None = doc("the --tune-json file; null without it")
    decode: str = doc("decode variant (runtimes.decode.DECODERS)")
    preprocess: str = doc("preprocess variant (runtimes.pipeline)")
    postprocess: str = doc("postprocess variant (runtimes.pipeline)")
    identical: bool = doc(
        "every stage claims the reference's output; false: a backend times it only after its detections "
        "on the photos match the reference pipeline's within verify.decode's row (tune.pipelines.admit)"
    )


@dataclass(frozen=True, kw_only=True)
class FirstCall:
    backend: str | None = doc("the backend (absent when the child failed)", optional=True)
    threads: int | None = doc("threads in the child (absent when it failed)", optional=True)
    first_call_ms: float | None = doc("runtime import + load + first inference in a fresh process")
    peak_rss_mb: float | None = doc("the child's peak resident set after a few calls, MB")
    base_rss_mb: float | None = doc(
        "the child's resident set before loading (Python, numpy, detbench, torch)"
    )
    reason: str | None = doc("why the child failed; null when it ran")


@dataclass(frozen=True, kw_only=True)
class Efficiency:
    precision: str = doc("the arithmetic the backend computes in (fp32, bf16, int8)")
    peak_gflops_per_s: float | None = doc("that precision's peak at --threads; null: not measured")
    peak_runtime: str | None = doc("the runtime whose GEMM set that peak")
    gflops_per_s_batch1: float | None = doc("GFLOPs per image x images/s at batch 1")
    gflops_per_s_batchN: float | None = doc("the same at --batch (null without throughput)")
    peak_fraction_batch1: float | None = doc("gflops_per_s_batch1 / the peak; null where an input is missing")
    peak_fraction_batchN: float | None = doc("gflops_per_s_batchN / the peak")


@dataclass(frozen=True, kw_only=True)
class Backend:
    name: str = doc("registered backend name")
    reference: bool = doc("true for pytorch, the reference of speedups and deviations")
    artifact: str = doc("the artifact's path")
    artifact_bytes: int = doc("its size on disk (OpenVINO: .xml + .bin)")
    size_mb: float = doc("artifact_bytes / 1e6")
    dynamic_batch: bool = doc("the artifact takes any batch")
    describe: dict[str, Any] = doc("the backend's own description (Backend.describe(); open-ended)")
    deviation: Deviation = doc("raw head output vs eager PyTorch's on the same batch")
    accuracy: Accuracy = doc("scored on the first val_images val images")
    latency_ms: Latency = doc("steady state at batch 1, alternated blocks")
    speedup: Speedup = doc("pytorch / this at batch 1")
    throughput: Throughput = doc("images/s at --batch; nulls + reason for a fixed-batch artifact")
    latency_by_threads: dict[str, ThreadLatency] = doc("{threads: latency at batch 1} for thread_columns")
    stages_ms: Stages = doc("per-image medians of the deployment pipeline, one val image at a time")
    photo_stages_ms: Stages | None = doc(
        "the same on photo-sized JPEGs (data.photos; absent in older files)", optional=True
    )
    recommended_photo_stages_ms: Stages | None = doc(
        "the same photos through recommended_pipeline's variants, in the same alternated run as "
        "photo_stages_ms (its blocks beside this backend's reference blocks); images 0 and the reason "
        "when not timed: a variant this backend did not admit, or the reference pipeline itself "
        "(absent in older files)",
        optional=True,
    )
    first_call: FirstCall = doc("cold start and memory in a fresh process")
    efficiency: Efficiency = doc("achieved GFLOP/s as a share of the backend's own precision's peak")
    recommended: bool = doc("true for the backend detbench tune recommended")


@dataclass(frozen=True, kw_only=True)
class Training:
    source: str | None = doc("metrics.json beside the weights; null when absent")
    matches_weights: bool | None = doc("it was written for these weights (sha256); null when absent")
    epochs: list[dict[str, Any]] = doc("per-epoch losses and metrics as detbench.model.train writes them")
    final: dict[str, Any] | None = doc("final validation metrics of the training run")
    per_class: dict[str, Any] | None = doc("the training run's per-class metrics")
    note: str = doc("what is missing or doubtful, or empty")


@dataclass(frozen=True, kw_only=True)
class HistoryRun:
    file: str = doc("the saved pytest-benchmark run")
    datetime: str = doc("when it was saved (ISO-8601; the file's time when the run has none)")
    medians_ms: dict[str, float] = doc("{benchmark fullname: median, ms}")
    label: str = doc("its save number and time, for the plot's axis")


@dataclass(frozen=True, kw_only=True)
class History:
    dirs: list[str] = doc("folders searched for saved runs")
    runs: list[HistoryRun] = doc("the saved runs found, oldest first")
    skipped: list[str] = doc("one line per unreadable file, with the reason")
    note: str = doc("why there is no history, or empty")


@dataclass(frozen=True, kw_only=True)
class Plots:
    latency_vs_size: str | None = doc("file name in --out; null when not drawn (notes say why)", default=None)
    per_class_map50: str | None = doc("file name, or null", default=None)
    training_curves: str | None = doc("file name; null without a training record", default=None)
    latency_history: str | None = doc("file name; null without saved benchmark runs", default=None)


@dataclass(frozen=True)
class Check:
    """One check of one backend (``report.verdict`` makes them)."""

    backend: str = doc("the backend judged")
    kind: str = doc("tolerance, accuracy, size budget or latency budget")
    name: str = doc("which check of that kind")
    passed: bool = doc("it passed")
    reason: str = doc("the numbers behind the result")


@dataclass(frozen=True, kw_only=True)
class Verdict:
    passed: bool = doc("every check passed")
    failed_backends: list[str] = doc("backends with a failed check")
    checks: list[Check] = doc("every check, in the order run (report.verdict)")


@dataclass(frozen=True, kw_only=True)
class Report:
    schema: int = doc("the format's version (1)")
    created: str = doc("ISO-8601 UTC time the report was made")
    duration_s: float = doc("wall time of the whole run, s")
    step_s: dict[str, float] = doc("seconds per step (export_load, deviation, accuracy, ...) and total")
    settings: Settings = doc("what was run")
    environment: Environment = doc("where it ran")
    model: Model = doc("the model's size")
    peak: Peak = doc("GEMM peaks per precision with the runtimes' own kernels (perf.peak), the yardstick")
    recommended: dict[str, Any] | None = doc(
        "the recommended entry of a detbench tune result (tune.json: backend, threads, ...), or null"
    )
    recommended_pipeline: PipelineVariants | None = doc(
        "the pipeline timed end to end beside the reference on the photos (each backend's "
        "recommended_photo_stages_ms); absent in older files",
        optional=True,
    )
    backends: list[Backend] = doc("one row per backend, pytorch first")
    class_names: list[str] = doc("the model's classes in id order (rows of the per-class tables)")
    training: Training = doc("the baseline's training record")
    history: History = doc("median latencies of saved pytest-benchmark runs")
    plots: Plots = doc("the PNG figures written beside report.json")
    verdict: Verdict = doc("PASS/FAIL per backend and the checks behind it")
    notes: list[str] = doc("everything skipped or approximated, and why")

    def to_json(self) -> dict[str, Any]:
        """The report.json document."""
        return json_safe(self)


def schema_markdown() -> str:
    """report.json's section of ``docs/schemas.md``."""
    return markdown(
        Report,
        "report.json (`detbench report`)",
        f'`"schema": {SCHEMA}`. Written by `detbench report` into `--out`; `report --compare` reads '
        "an older one. Times in ms unless the key says otherwise; sizes in bytes, MB = 1e6 bytes.",
    )
