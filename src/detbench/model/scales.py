"""Untrained checkpoints of any scale and family (YOLOv8 by default), for latency work and for checks
of a family's structure: neither depends on the weights, so nothing is trained or downloaded.
Cached by ``runtimes.export.untrained_checkpoint``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def build_untrained_checkpoint(
    scale: str,
    dest: Path,
    *,
    imgsz: int,
    names: Sequence[str],
    seed: int = 0,
    family: str = "yolov8",
    bn_images: int = 0,
) -> None:
    """An untrained ``{family}{scale}`` (ultralytics' bundled ``{family}{scale}.yaml``, e.g. yolo11n)
    with ``len(names)`` classes, saved as ultralytics saves a checkpoint (fp16 module under "model",
    "train_args" with imgsz), so load_detection_model reads it. ``bn_images`` > 0: BatchNorm statistics
    set from that many synthetic scenes (``batchnorm_statistics``), so its outputs vary."""
    import torch
    import ultralytics
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel(f"{family}{scale}.yaml", nc=len(names), verbose=False)
    model.names = dict(enumerate(names))
    if bn_images:
        batchnorm_statistics(model, imgsz, bn_images, seed)
    ckpt = {
        "model": model.half(),
        "train_args": {"imgsz": imgsz},
        "version": ultralytics.__version__,
        "date": None,
        "note": f"untrained {family}{scale} (seed {seed}) for latency benchmarks only",
    }
    torch.save(ckpt, dest)


def batchnorm_statistics(model: object, imgsz: int, images: int, seed: int = 0) -> None:
    """Set every BatchNorm's running statistics from ``images`` synthetic scenes (forward passes only,
    no gradient step), then scale the Detect head's output convs to a spread a trained model shows.
    At random init the features shrink ~1e-5x by the head, so every score and box is the bias (all
    tied); with measured statistics alone the logits reach +-50 (scores saturate at 1.0, tied again);
    scaled to logit std 0.5 on these scenes they stay below ~10 on other scenes (measured: 35 at 2.0).
    Checks that compare detections need scores that differ."""
    import numpy as np
    import torch

    from detbench.data.synth import make_scene

    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over all the batches
    scenes = [
        make_scene(seed, "train", i, imgsz)[0].convert("RGB").resize((imgsz, imgsz)) for i in range(images)
    ]
    x = torch.from_numpy(np.stack([np.asarray(s) for s in scenes])).permute(0, 3, 1, 2).float() / 255
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    head = model.model[-1]
    outs: dict[torch.nn.Conv2d, torch.Tensor] = {}
    convs = {}  # each branch's last conv -> (logit std, bias): boxes near their anchors, scores 0.01..0.99
    for name, target in (("cv2", (0.25, None)), ("cv3", (0.5, -2.0))):
        for prefix in ("", "one2one_"):
            for seq in getattr(head, prefix + name, None) or ():
                convs[seq[-1]] = target
    hooks = [c.register_forward_hook(lambda m, i, o: outs.__setitem__(m, o)) for c in convs]
    with torch.no_grad():
        model(x)
        for conv, (std, bias) in convs.items():
            spread = (outs[conv] - conv.bias[None, :, None, None]).std()
            conv.weight.mul_(std / max(float(spread), 1e-12))
            if bias is not None:
                conv.bias.fill_(bias)
    for h in hooks:
        h.remove()
