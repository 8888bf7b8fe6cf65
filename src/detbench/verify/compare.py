"""How close is close enough: the tolerance table and the comparators every test uses.

Raw head layout: channels 0-3 are the box (cx, cy, w, h in input pixels, 0..imgsz), channels 4+
are per-class sigmoid scores (0..1). The two groups have different units, so each gets its own
absolute tolerance; a failure says which group the worst element is in (like Polygraphy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detbench.runtimes.postprocess import CONF, Detections


@dataclass(frozen=True)
class Tolerance:
    box_atol: float  # pixels at the model input size
    score_atol: float  # absolute, on sigmoid scores
    rtol: float
    det_iou: float  # matched detections must overlap at least this much
    det_score: float  # and differ in score by at most this
    map_drop: float  # overall mAP50 / mAP50-95 may fall at most this far below the baseline
    class_map_drop: float  # and no class's mAP50 further than this
    reason: str
    # Box channels are compared only at anchors whose reference top score reaches this: an anchor
    # no detection can come from may regress its box anywhere under INT8, and that is harmless.
    box_score_floor: float = 0.0
    # Fraction of detections that may go unmatched (INT8 moves a few small boxes past the IoU bar).
    det_unmatched_frac: float = 0.0
    # An unmatched detection is excused when its score lies within this of the confidence threshold
    # (the other backend may have scored it just below). None: det_score, the matched-score bound.
    det_threshold_margin: float | None = None


# Each fp32 bound is ~10x the largest deviation measured over 120 val images plus 120 images of
# every mode/content kind the Hypothesis strategies draw (README "Tolerances": onnxruntime box
# 3.0e-4 px / score 1.3e-6, openvino 3.7e-4 px / 1.7e-6, torchscript 0). INT8: box 2.6 px on live
# anchors, score 0.26; its real gate is mAP.
# fp32 detection and accuracy bounds are the same for every fp32 backend (the contract).
_FP32 = {"det_iou": 0.99, "det_score": 1e-3, "map_drop": 0.005, "class_map_drop": 0.005}

TOLERANCES: dict[str, Tolerance] = {
    "pytorch": Tolerance(
        box_atol=1e-3, score_atol=1e-5, rtol=1e-5, **_FP32,
        reason="the reference against itself: only batch-size-dependent kernel choice differs "
        "(run-to-run identity is tested separately, bit for bit)",
    ),
    "torchscript": Tolerance(
        box_atol=1e-3, score_atol=1e-5, rtol=1e-5, **_FP32,
        reason="traced graph runs the same ATen kernels; only fusion order differs",
    ),
    "onnxruntime": Tolerance(
        box_atol=4e-3, score_atol=2e-5, rtol=1e-5, **_FP32,
        reason="MLAS conv kernels sum in another order: fp32 rounding only",
    ),
    "openvino": Tolerance(
        box_atol=4e-3, score_atol=2e-5, rtol=1e-5, **_FP32,
        reason="oneDNN kernels, fp32 precision hint: fp32 rounding only",
    ),
    "onnxruntime-int8": Tolerance(
        box_atol=10.0, score_atol=0.4, rtol=0.1, det_iou=0.5, det_score=0.30, map_drop=0.02,
        class_map_drop=0.05, box_score_floor=CONF, det_unmatched_frac=0.1,
        # det_score: matched pairs on 2000 drawn scenes (`measure_int8_margin.py --drawn 2000`, AVX-512
        # VNNI EPYC): p99 0.073, max 0.243; the suite's targeted search there found a grey 48x141 scene
        # at 0.254 (dress 0.347 vs 0.601, IoU 0.81), over the 0.25 first set on AVX2.
        # |INT8 - fp32| score over the 849 matched pairs within 0.15 of the threshold on the 200 val
        # images: p99 0.058, max 0.169 (scripts/measure_int8_margin.py). The margin is the measured max:
        # at p99 a Hypothesis-drawn scene (ci profile) failed on a duplicate sunglass box the reference
        # kept at 0.342 (0.09 above the threshold) on 3 detections, where the 10 % allowance is 0.3.
        det_threshold_margin=0.17,
        reason="8-bit weights/activations: judged by mAP; raw and detection bounds only catch gross breakage",
    ),
    # Rows below: bounds a few x the deviation measured with `python scripts/measure_backends.py`
    # on the 200 val images (raw head vs eager PyTorch; INT8/bf16 boxes on live anchors).
    "openvino-bf16": Tolerance(
        box_atol=3.0, score_atol=0.06, rtol=0.01, det_iou=0.7, det_score=0.05, map_drop=0.005,
        class_map_drop=0.03, box_score_floor=CONF, det_unmatched_frac=0.1,
        reason="bf16 (8-bit mantissa) multiplies in oneDNN: measured box 0.81 px on live anchors, score "
        "0.019; matched IoU >= 0.84, score diff 0.015, 0.2% unmatched over the split, but one tiny box "
        "(4x3 px) of 11 in a drawn scene fell under IoU 0.7, hence 10% per image; mAP50-95 -0.0006 "
        "(0.005 is issue 11's contract), worst class sunglass -0.0094",
    ),
    "openvino-int8": Tolerance(
        box_atol=10.0, score_atol=0.4, rtol=0.1, det_iou=0.5, det_score=0.25, map_drop=0.02,
        class_map_drop=0.05, box_score_floor=CONF, det_unmatched_frac=0.1,
        # |INT8 - fp32| score over the 852 matched pairs within 0.15 of the threshold on the 200 val
        # images: p99 0.051, max 0.230 (`scripts/measure_int8_margin.py --backend openvino-int8`,
        # 2026-12-02). The margin is the measured max, rounded up: NNCF moves one near-threshold score
        # that far, so this closes the loophole only just (0.24 vs det_score 0.25).
        det_threshold_margin=0.24,
        reason="NNCF INT8, Detect head in float: measured box 2.2 px on live anchors, score 0.12; matched "
        "IoU >= 0.80, score diff 0.16, 1.0% unmatched; mAP50-95 -0.0028, worst class sunglass -0.033 "
        "(the INT8 accuracy contract)",
    ),
    "torchscript-frozen": Tolerance(
        box_atol=1e-3, score_atol=1e-5, rtol=1e-5, **_FP32,
        reason="frozen graph folds constants in another order: measured box 1.8e-4 px, score 1.4e-6",
    ),
    "pytorch-compile": Tolerance(
        box_atol=2e-3, score_atol=1e-5, rtol=1e-5, **_FP32,
        reason="inductor's generated C++ kernels (frozen weights) sum in another order: measured box "
        "3.7e-4 px, score 1.7e-6",
    ),
    # Checked as detections and mAP against the model's own end2end forward (backends.reference_of;
    # it has no raw head, so the suite's raw tests skip it): the fp32 detection and mAP contract.
    # Measured on the cached 12-epoch yolo26n, 200 val images of its synthetic set (2026-12-07):
    # `python scripts/measure_end2end.py --weights <yolo26n best.pt> --data <its data.yaml>
    # --val-images 200`. The raw-row bounds stay for the rows' own check in that script and
    # tests/test_end2end.py (untrained yolo26n/yolov10n with BatchNorm statistics: box 7.5e-3 px,
    # score 5.6e-5, where near-tied scores did not swap rows).
    "onnxruntime-end2end": Tolerance(
        box_atol=0.03, score_atol=2e-4, rtol=1e-5, **_FP32,
        reason="MLAS kernels, then top-k over anchors x classes: on the trained yolo26n's 200 val images "
        "all 858 detections of its own end2end forward paired, IoU >= 0.99990, box 1.5e-5 px, score "
        "1.9e-6, none unmatched; mAP50 0.5619 and mAP50-95 0.3108 both ways (difference 0)",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Deviation:
    max_abs: float
    max_rel: float
    worst_index: tuple[int, ...]  # (image, channel, anchor)
    worst_group: str  # "box" or "score"
    box_max_abs: float
    score_max_abs: float

    def describe(self) -> str:
        n, c, a = self.worst_index
        return (
            f"max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}; worst at image {n}, channel {c} "
            f"({self.worst_group}), anchor {a}; box group max abs {self.box_max_abs:.3g} px, "
            f"score group max abs {self.score_max_abs:.3g}"
        )


class OutputMismatch(AssertionError):
    """Raised by the comparators; its message is the whole diagnosis."""


def deviation(ref: np.ndarray, out: np.ndarray) -> Deviation:
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    rel = diff / np.maximum(np.abs(ref.astype(np.float64)), 1e-6)
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return Deviation(
        max_abs=float(diff.max(initial=0.0)),
        max_rel=float(rel.max(initial=0.0)),
        worst_index=tuple(int(i) for i in idx),
        worst_group="box" if idx[1] < 4 else "score",
        box_max_abs=float(diff[:, :4].max(initial=0.0)),
        score_max_abs=float(diff[:, 4:].max(initial=0.0)),
    )


def assert_outputs_close(ref: np.ndarray, out: np.ndarray, tol: Tolerance, *, label: str = "") -> Deviation:
    """Check shape, dtype, finiteness, then values per channel group; return the deviation."""
    where = f"{label}: " if label else ""
    if out.shape != ref.shape:
        raise OutputMismatch(f"{where}shape {out.shape} != reference {ref.shape}")
    if out.dtype != ref.dtype:
        raise OutputMismatch(f"{where}dtype {out.dtype} != reference {ref.dtype}")
    if not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0]
        raise OutputMismatch(f"{where}non-finite value at {tuple(int(i) for i in bad)}")
    dev = deviation(ref, out)
    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    live = ref64[:, 4:].max(axis=1, keepdims=True) >= tol.box_score_floor  # (N, 1, A)
    for group, sl, atol in (("box", slice(0, 4), tol.box_atol), ("score", slice(4, None), tol.score_atol)):
        bound = atol + tol.rtol * np.abs(ref64[:, sl])
        excess = np.abs(out64[:, sl] - ref64[:, sl]) - bound
        if group == "box":
            excess = np.where(live, excess, -np.inf)
        if (excess > 0).any():
            n, c, a = np.unravel_index(int(np.argmax(excess)), excess.shape)
            c += sl.start
            raise OutputMismatch(
                f"{where}{group} outputs differ beyond atol={atol:g}, rtol={tol.rtol:g}: "
                f"{int((excess > 0).sum())} of {excess.size} elements; worst excess at image {n}, "
                f"channel {c}, anchor {a}: ref {ref64[n, c, a]:.6g} vs {out64[n, c, a]:.6g}. "
                f"Overall: {dev.describe()}"
            )
    return dev


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (K, 4) and (M, 4) xyxy boxes."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


@dataclass(frozen=True)
class DetectionMatch:
    pairs: list[tuple[int, int, float, float]]  # (ref idx, out idx, iou, score diff)
    unmatched_ref: list[int]
    unmatched_out: list[int]


def match_detections(ref: Detections, out: Detections, *, iou: float) -> DetectionMatch:
    """Same-class pairs at IoU >= ``iou``: as many as can be made, and of those pairings the one with
    the smallest total score difference (an optimal assignment). Two overlapping boxes of one class
    can each pass the IoU bound with both partners; pairing each reference with its highest-IoU
    candidate could cross them, so the suite called two reproduced jackets (0.79 and 0.27, against
    0.76 and 0.42) a 0.50 score change."""
    from scipy.optimize import linear_sum_assignment

    ious = box_iou(ref.xyxy, out.xyxy) if len(ref) and len(out) else np.zeros((len(ref), len(out)))
    ok = (ious >= iou) & (np.asarray(ref.class_ids)[:, None] == np.asarray(out.class_ids)[None, :])
    diff = np.abs(np.asarray(ref.scores, np.float64)[:, None] - np.asarray(out.scores, np.float64)[None, :])
    # A pair that fails the bounds costs more than every score difference together (each <= 1), so
    # the assignment first makes the most admissible pairs, then the closest in score.
    rows, cols = linear_sum_assignment(np.where(ok, diff, 1.0 + min(ok.shape)))
    chosen = sorted(((r, o) for r, o in zip(rows, cols) if ok[r, o]), key=lambda p: -ref.scores[p[0]])
    pairs = [(int(r), int(o), float(ious[r, o]), float(diff[r, o])) for r, o in chosen]
    matched_ref, matched_out = {p[0] for p in pairs}, {p[1] for p in pairs}
    return DetectionMatch(
        pairs,
        [i for i in range(len(ref)) if i not in matched_ref],
        [o for o in range(len(out)) if o not in matched_out],
    )


# Pairs detections for *reporting* how far they moved (report, tune): loose, so one moved past its
# row's IoU bound is still paired and its move shown; the row's own bound decides pass or fail.
DEVIATION_IOU = 0.5


@dataclass(frozen=True)
class DetectionDeviation:
    """The largest differences over detections matched as ``match_detections`` matches them."""

    pairs: int
    unmatched: int  # on both sides
    box_max_abs: float  # original-image pixels
    score_max_abs: float
    min_iou: float  # 1.0 without pairs

    @property
    def max_abs(self) -> float:
        return max(self.box_max_abs, self.score_max_abs)


def detection_deviation(
    ref: Sequence[Detections], out: Sequence[Detections], *, iou: float
) -> DetectionDeviation:
    """Per image, ``ref`` and ``out`` matched at ``iou`` as match_detections pairs them; the worst box
    corner, score and IoU over all pairs, and how many detections found no partner."""
    pairs = unmatched = 0
    box = score = 0.0
    min_iou = 1.0
    for r, o in zip(ref, out, strict=True):
        m = match_detections(r, o, iou=iou)
        pairs += len(m.pairs)
        unmatched += len(m.unmatched_ref) + len(m.unmatched_out)
        for ri, oi, pair_iou, ds in m.pairs:
            box = max(box, float(np.abs(r.xyxy[ri].astype(np.float64) - o.xyxy[oi]).max()))
            score, min_iou = max(score, ds), min(min_iou, pair_iou)
    return DetectionDeviation(pairs, unmatched, box, score, min_iou)


def assert_detections_match(
    ref: Sequence[Detections],
    out: Sequence[Detections],
    tol: Tolerance,
    *,
    conf: float = CONF,
    label: str = "",
) -> None:
    """Same objects, same classes, IoU >= tol.det_iou, score within tol.det_score. A detection left
    unmatched is excused only when its score lies within tol.det_threshold_margin (default
    tol.det_score) of the confidence threshold (the other backend may have scored it just below)."""
    where = f"{label}: " if label else ""
    if len(ref) != len(out):
        raise OutputMismatch(f"{where}{len(out)} images of detections vs {len(ref)} in the reference")
    margin = tol.det_score if tol.det_threshold_margin is None else tol.det_threshold_margin
    problems = []
    unmatched: list[str] = []
    total = sum(len(r) for r in ref) + sum(len(o) for o in out)  # unmatched are counted on both sides
    for i, (r, o) in enumerate(zip(ref, out)):
        m = match_detections(r, o, iou=tol.det_iou)
        for ri, oi, _iou, ds in m.pairs:
            if ds > tol.det_score:
                problems.append(
                    f"image {i}: {r.class_names[ri]} score {r.scores[ri]:.4f} vs "
                    f"{o.scores[oi]:.4f} (diff {ds:.2g} > {tol.det_score:g})"
                )
        for side, det, idxs in (("reference", r, m.unmatched_ref), ("candidate", o, m.unmatched_out)):
            for k in idxs:
                if abs(float(det.scores[k]) - conf) > margin:
                    unmatched.append(
                        f"image {i}: {side} {det.class_names[k]} "
                        f"(score {det.scores[k]:.4f}, box {np.round(det.xyxy[k], 1).tolist()}) "
                        f"has no match with IoU >= {tol.det_iou}"
                    )
    if len(unmatched) > tol.det_unmatched_frac * total:
        problems += unmatched
        if tol.det_unmatched_frac:
            problems.append(
                f"{len(unmatched)} unmatched of {total} detections (both sides) "
                f"(allowed: {tol.det_unmatched_frac:.0%})"
            )
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise OutputMismatch(f"{where}detections differ:\n  {shown}{more}")


def assert_accuracy_close(ref: dict, out: dict, tol: Tolerance, *, label: str = "") -> None:
    """Overall mAP50 and mAP50-95 within ``tol.map_drop`` of the reference (either way); no class's
    mAP50 more than ``tol.class_map_drop`` below it. Takes ``AccuracyResult.to_dict()`` mappings."""
    where = f"{label}: " if label else ""
    problems = [
        f"{k} {out[k]:.4f} vs reference {ref[k]:.4f} (|diff| {abs(out[k] - ref[k]):.4f} > {tol.map_drop})"
        for k in ("mAP50", "mAP50-95")
        if abs(out[k] - ref[k]) > tol.map_drop
    ]
    for name, r in ref["per_class"].items():
        o = out["per_class"][name]
        if r["mAP50"] is None:
            continue
        if r["mAP50"] - (o["mAP50"] or 0.0) > tol.class_map_drop:
            problems.append(
                f"class {name}: mAP50 {o['mAP50'] or 0.0:.4f} is more than {tol.class_map_drop} "
                f"below the reference {r['mAP50']:.4f}"
            )
    if problems:
        raise OutputMismatch(f"{where}accuracy differs:\n  " + "\n  ".join(problems))
