"""The metadata ultralytics writes into its exports: written into ours, read from the user's.

ultralytics' ``AutoBackend`` reads it to letterbox at the export size and to name the classes, so a
user's ``YOLO("model.onnx").predict(...)`` works on our artifacts; we read it from a user's
ultralytics export to check it fits the baseline before running it. Where it lives (ultralytics'
``Exporter`` and ``BaseBackend.read_metadata``): ONNX ``metadata_props`` (values as ``str(v)``),
TorchScript extra file ``config.txt`` (JSON), OpenVINO ``metadata.yaml`` beside the IR.
"""

from __future__ import annotations

import ast
import json
import zipfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from detbench import __version__
from detbench.errors import ModelFileError

TORCHSCRIPT_META = "config.txt"  # the extra file name ultralytics' TorchScript exports use
OPENVINO_META = "metadata.yaml"
# Fields AutoBackend.apply_metadata parses from strings (ONNX stores every value as one).
_INT_FIELDS = {"stride", "batch", "channels"}
_LITERAL_FIELDS = {"imgsz", "names", "args", "end2end", "kpt_shape", "kpt_names"}


def ultralytics_metadata(
    names: Sequence[str], imgsz: int, stride: int, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The dict ultralytics' exporter writes, for a raw-head (no NMS) detector at a square size.

    ``args.dynamic`` is False even with a dynamic batch: in ultralytics "dynamic" means a free
    height and width, and with it ``predict`` letterboxes to the image's aspect (e.g. 128x96), which
    our fixed-size graphs refuse. ``batch`` 1 makes AutoBackend feed one image per call.
    """
    import ultralytics

    return {
        "description": f"Ultralytics-compatible YOLO detector exported by detbench {__version__}",
        "author": "detbench",
        "date": datetime.now().astimezone().isoformat(),
        "version": ultralytics.__version__,  # the ultralytics whose modules built the graph
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "stride": int(stride),
        "task": "detect",
        "head": "Detect",
        "batch": 1,
        "imgsz": [int(imgsz), int(imgsz)],
        "names": dict(enumerate(names)),
        "args": {"batch": 1, "dynamic": False, "nms": False, **(args or {})},
        "channels": 3,
        "end2end": False,
        "producer": f"detbench {__version__}",
    }


def add_onnx_metadata(proto: Any, meta: dict[str, Any]) -> None:
    """Set ``meta`` in an ONNX ModelProto's metadata_props (same-named keys replaced), as ultralytics does."""
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in meta]
    del proto.metadata_props[:]
    for k, v in [*keep, *((k, str(v)) for k, v in meta.items())]:
        proto.metadata_props.add(key=k, value=v)


def torchscript_extra_files(meta: dict[str, Any]) -> dict[str, str]:
    """``_extra_files`` for ``ScriptModule.save``: the JSON ultralytics' AutoBackend reads."""
    return {TORCHSCRIPT_META: json.dumps(meta)}


def write_openvino_metadata(ir_dir: Path, meta: dict[str, Any]) -> None:
    """``metadata.yaml`` beside the IR, where AutoBackend looks for it."""
    import yaml

    (ir_dir / OPENVINO_META).write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))


def read_metadata(artifact: Path) -> dict[str, Any]:
    """An export's ultralytics metadata, typed (names as {int: str}, imgsz as [h, w]); {} if it has none.

    Unreadable metadata of a file that loads is an error naming the file: silently ignoring it would
    skip the fit check it exists for.
    """
    artifact = Path(artifact)
    try:
        return _typed(_read_raw(artifact))
    except (OSError, ValueError, SyntaxError, TypeError, zipfile.BadZipFile) as exc:
        reason = (
            f"unreadable ultralytics metadata ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
        )
        raise ModelFileError(artifact, reason) from exc


def _read_raw(artifact: Path) -> dict[str, Any]:
    if artifact.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(artifact), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}
    if zipfile.is_zipfile(artifact):  # TorchScript: extra files sit at <archive>/extra/<name>
        with zipfile.ZipFile(artifact) as z:
            name = next((n for n in z.namelist() if n.endswith(f"extra/{TORCHSCRIPT_META}")), None)
            text = z.read(name).decode() if name else ""
        return json.loads(text) if text.strip() else {}
    if not (artifact.is_dir() or artifact.suffix == ".xml"):
        return {}  # e.g. a .pt checkpoint: its names are in the checkpoint itself
    sidecar = (artifact if artifact.is_dir() else artifact.parent) / OPENVINO_META
    if sidecar.is_file():
        import yaml

        data = yaml.safe_load(sidecar.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{OPENVINO_META} is not a mapping")
        return data
    return {}


def _typed(raw: dict[str, Any]) -> dict[str, Any]:
    """The conversions AutoBackend.apply_metadata makes, plus names as {int: str}."""
    out = dict(raw)
    for k, v in raw.items():
        if k in _INT_FIELDS and v is not None:
            out[k] = int(v)
        elif k in _LITERAL_FIELDS and isinstance(v, str):
            out[k] = ast.literal_eval(v)
    names = out.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if isinstance(names, dict):
        out["names"] = {int(k): str(v) for k, v in names.items()}
    imgsz = out.get("imgsz")
    if isinstance(imgsz, int):
        out["imgsz"] = [imgsz, imgsz]
    elif isinstance(imgsz, (list, tuple)):
        out["imgsz"] = [int(s) for s in imgsz]
    return out


def fit_problem(
    meta: dict[str, Any], names: Sequence[str], imgsz: int, stride: int, batch: int | None
) -> str | None:
    """Why an export's metadata does not fit the baseline (naming the field), or None when it fits."""
    if "names" in meta:
        theirs = [meta["names"][i] for i in sorted(meta["names"])]
        if len(theirs) != len(names):
            return f"metadata 'names' has {len(theirs)} classes; the baseline has {len(names)}"
        diff = [(i, a, b) for i, (a, b) in enumerate(zip(theirs, names)) if a != b]
        if diff:
            i, a, b = diff[0]
            return (
                f"metadata 'names' differs from the baseline's at {len(diff)} class(es), "
                f"first at {i}: {a!r} vs {b!r}"
            )
    if "imgsz" in meta and list(meta["imgsz"]) != [imgsz, imgsz]:
        return f"metadata 'imgsz' {meta['imgsz']} does not fit the baseline's {[imgsz, imgsz]}"
    if "stride" in meta and meta["stride"] != stride:
        return f"metadata 'stride' {meta['stride']} does not fit the baseline's {stride}"
    if meta.get("batch") is not None and batch is not None and meta["batch"] != batch:
        return f"metadata 'batch' {meta['batch']} disagrees with the graph's fixed input batch {batch}"
    return None
