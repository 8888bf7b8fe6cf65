"""The Detect head found by structure, for every ultralytics detection family, never by layer index.

The INT8 recipes keep the head's decoding (DFL softmax, anchor arithmetic, class sigmoid) in float;
they find it by the node names an export gives it. Those names follow the module path: the head at
index ``i`` of the DetectionModel's ``model`` Sequential exports as ``/model/model.{i}/...`` (the
``/model`` in front is ``RawHead``), its DFL as ``/model/model.{i}/dfl/...``. Measured with
ultralytics 8.4.190 at n scale: YOLOv8 and v9 (t) ``model.22``, YOLO11, YOLO26 and YOLOv10
``model.23``, YOLO12 ``model.21``, YOLOv5u ``model.24``; YOLO26 (``reg_max=1``) has no DFL.
YOLO11, YOLO12, YOLO26 and YOLOv10 build their class branch (``cv3``) from depthwise 3x3 + pointwise
1x1 convs (ultralytics' non-legacy head); YOLOv8, v9 and v5u from full 3x3 convs.
YOLO26 and YOLOv10 also carry a one-to-one branch (``one2one_cv2``/``one2one_cv3``): their NMS-free
(end2end) head, which fusing drops unless it is selected first, so it is looked for before fusing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from detbench.errors import ModelFileError


@dataclass(frozen=True)
class DetectHead:
    """Where the Detect head sits in a DetectionModel, and what it holds."""

    index: int  # in the DetectionModel's ``model`` Sequential
    kind: str  # the head's class name: Detect, v10Detect, ...
    dfl: bool  # False where reg_max == 1 (YOLO26): the box branch then has no DFL module
    one2one: bool = False  # has the one-to-one (NMS-free, end2end) branch: YOLO26, YOLOv10
    family: str = ""  # the model's yaml stem (yolov8n, yolo26n, ...), "" where the checkpoint has none
    depthwise_cls: bool = False  # the class branch (cv3) holds depthwise convs: YOLO11, 12, 26, v10

    @property
    def prefix(self) -> str:
        """Fragment of every exported node name inside the head (``/model/model.22/Sub``)."""
        return f"/model.{self.index}/"

    @property
    def dfl_prefix(self) -> str | None:
        """Fragment of the DFL's node names, or None where the head has no DFL."""
        return f"{self.prefix}dfl/" if self.dfl else None

    @property
    def depthwise_cls_prefix(self) -> str | None:
        """Fragment of the class branch's node names where it holds depthwise convs, else None."""
        return f"{self.prefix}cv3." if self.depthwise_cls else None


def find_detect_head(model: torch.nn.Module, source: Path | str) -> DetectHead:
    """The one Detect head (or subclass: v10Detect, ...) among ``model.model``'s layers; ``source``
    names the file in the ModelFileError raised where there is none, more than one, or a task head
    (Segment, Pose, OBB: Detect subclasses whose output carries more than boxes and scores). Call it
    before fusing: ``one2one`` is read from the branch a fuse would drop."""
    from ultralytics.nn.modules.block import DFL
    from ultralytics.nn.modules.head import OBB, Detect, Pose, Segment, YOLOESegment

    layers = getattr(model, "model", None)
    if not isinstance(layers, torch.nn.Sequential):
        raise ModelFileError(
            source,
            f"{type(model).__name__} has no layer list (model.model) to find a Detect head in; "
            "detbench needs an ultralytics detection model",
        )
    found = [i for i, m in enumerate(layers) if isinstance(m, Detect)]
    if not found:
        last = type(layers[-1]).__name__ if len(layers) else "none"
        raise ModelFileError(
            source,
            f"no Detect head among its {len(layers)} layers (the last is {last}); "
            "detbench needs an ultralytics detection model",
        )
    if len(found) > 1:
        raise ModelFileError(source, f"{len(found)} Detect heads (layers {found}); detbench supports one")
    head = layers[found[0]]
    if isinstance(head, (Segment, YOLOESegment, Pose, OBB)):
        raise ModelFileError(
            source,
            f"its head (layer {found[0]}) is {type(head).__name__}, not a Detect head; "
            "detbench needs an ultralytics detection model",
        )
    yaml = getattr(model, "yaml", None)
    family = Path(str(yaml.get("yaml_file", ""))).stem if isinstance(yaml, dict) else ""
    return DetectHead(
        index=found[0],
        kind=type(head).__name__,
        dfl=isinstance(getattr(head, "dfl", None), DFL),
        one2one=getattr(head, "one2one_cv2", None) is not None,
        family=family,
        depthwise_cls=_has_depthwise_conv(getattr(head, "cv3", None)),
    )


def _has_depthwise_conv(branch: torch.nn.Module | None) -> bool:
    """Whether ``branch`` holds a conv whose groups are its input channels (one filter per channel)."""
    if branch is None:
        return False
    return any(
        isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
        for m in branch.modules()
    )
