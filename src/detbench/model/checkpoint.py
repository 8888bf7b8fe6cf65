"""Loading the baseline checkpoint as a plain ``torch.nn.Module`` that returns the raw head.

Every backend and every export starts from this one module, so they all compute the same graph:
Conv+BN fused (as ultralytics does for inference), Detect head in export mode (returns only the
``(N, 4 + classes, anchors)`` tensor: xywh in input pixels, then per-class sigmoid scores).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from detbench.errors import ModelFileError
from detbench.model.head import DetectHead, find_detect_head

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


STRIDES = (8, 16, 32)  # YOLOv8's three detection scales


def anchor_count(imgsz: int, strides: tuple[int, ...] = STRIDES) -> int:
    """Anchors in the raw head at a square input size: one per cell of each stride's grid."""
    return sum((imgsz // s) ** 2 for s in strides)


@dataclass(frozen=True)
class ModelInfo:
    names: tuple[str, ...]
    imgsz: int  # the size it was trained at (ultralytics records it in the checkpoint's train_args)
    stride: int
    head: DetectHead


class RawHead(torch.nn.Module):
    """Wraps a DetectionModel so its forward returns only the raw head tensor."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y[0] if isinstance(y, (list, tuple)) else y


def check_model_file(path: Path) -> Path:
    """Cheap checks with clear messages before any loader sees the file."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "file not found")
    if path.is_file():
        size = path.stat().st_size
        if size == 0:
            raise ModelFileError(path, "file is empty")
        with open(path, "rb") as fh:
            head = fh.read(64)
        if head.startswith(LFS_POINTER_PREFIX):
            raise ModelFileError(path, "is a Git LFS pointer, not the model: run `git lfs pull`")
    return path


def _one_line_cause(exc: BaseException) -> str:
    """The innermost cause in one line: ultralytics wraps torch's error in a multi-line, decorated one."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    line = re.sub(r"^ERROR\W*", "", line)  # ultralytics' "ERROR ❌️ " prefix
    line = re.split(r"(?<=\.)\s", line, maxsplit=1)[0]  # first sentence; torch appends paragraphs
    return f"{type(exc).__name__}: {line[:300]}"


def load_detection_model(weights: Path | str, *, end2end: bool = False) -> tuple[RawHead, ModelInfo]:
    """Load an ultralytics detection checkpoint (.pt) for inference, fp32, on CPU.

    ``end2end`` selects the head's one-to-one (NMS-free) branch, so the module returns
    ``(N, min(300, anchors), 6)`` rows of x1, y1, x2, y2, score, class instead of the raw head; a
    model without that branch is refused with ``end2end_unavailable``'s reason.
    """
    from ultralytics.nn.tasks import load_checkpoint

    weights = check_model_file(Path(weights))
    try:
        # Fused below, after the head is found: fusing drops the branch end2end does not select.
        model, ckpt = load_checkpoint(str(weights), device="cpu", fuse=False)
    except ModelFileError:
        raise
    except Exception as exc:  # torch/pickle raise many types for corrupt files
        raise ModelFileError(weights, f"cannot load checkpoint ({_one_line_cause(exc)})") from exc
    if getattr(model, "task", "detect") != "detect":
        raise ModelFileError(weights, f"is a {model.task} model; detbench needs a detection model")
    head = find_detect_head(model, weights)
    if end2end:
        if reason := end2end_unavailable(head):
            raise ModelFileError(weights, reason)
        model.model[head.index].end2end = True
    if hasattr(model, "fuse"):
        model = model.fuse()
    model = copy.deepcopy(model).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    detect = model.model[head.index]
    detect.export = True  # return the decoded head only
    detect.format = "onnx"
    detect.dynamic = False
    names = model.names
    names = tuple(names[i] for i in sorted(names)) if isinstance(names, dict) else tuple(names)
    imgsz = int((ckpt.get("train_args") or {}).get("imgsz", 640))
    info = ModelInfo(names=names, imgsz=imgsz, stride=int(model.stride.max()), head=head)
    return RawHead(model).eval(), info


def end2end_unavailable(head: DetectHead) -> str | None:
    """Why this head has no end2end (NMS-free) export, naming the model's family; None where it has one."""
    if head.one2one:
        return None
    family = head.family or "this model"
    return (
        f"{family}'s {head.kind} head has no one-to-one branch: only NMS-free families "
        "(YOLO26, YOLOv10) export end2end"
    )
