"""report.json's per-image pipeline: the warm/cold keys are typed, older files still read and render."""

from __future__ import annotations

import json
from pathlib import Path

from detbench.report.records import Report
from detbench.report.render import STAGE_HEADER, deploy_header, deployment_rows, render_markdown, stage_rows
from detbench.schema import problems

SCHEMA_1 = Path(__file__).parent / "data" / "report-schema1.json"  # written before warm stages


def _old() -> dict:
    return json.loads(SCHEMA_1.read_text(encoding="utf-8"))


def _photo_e2e(doc: dict) -> list[str]:
    """The deployment table's "photos e2e ms" column."""
    i = deploy_header(doc).index("photos e2e ms")
    return [row[i] for row in deployment_rows(doc)]


def _warm(images: int) -> dict:
    return {
        "images": images,
        "warm_passes": 3,
        "decode_ms": 1.0,
        "preprocess_ms": 0.5,
        "decode_preprocess_ms": 1.5,
        "inference_ms": 4.0,
        "postprocess_ms": 0.25,
        "end_to_end_ms": 5.75,
        "cold_end_to_end_ms": 9.0,
        "reason": None,
    }


def test_an_older_file_renders_its_one_pass_figures_and_dashes_for_the_new_ones() -> None:
    """A file from before warm stages: the split it has, "-" for decode, preprocess, cold and photos."""
    doc = _old()
    rows = stage_rows(doc)
    assert [r[:3] for r in rows] == [["pytorch", "16 val", "-"], ["onnxruntime", "16 val", "-"]]
    assert all(len(r) == len(STAGE_HEADER) for r in rows)
    assert rows[0][3:5] == ["-", "-"] and rows[0][5] == "36.01" and rows[0][8] == "-"
    assert _photo_e2e(doc) == ["-", "-"]
    assert "## Per-image pipeline" in render_markdown(doc)


def test_new_keys_are_typed_and_rendered_for_both_image_sets() -> None:
    """Warm passes, decode, preprocess, cold end to end and the photo rows pass the schema check and
    show in the table; a backend not measured shows its reason."""
    doc = _old()
    doc["backends"][0]["stages_ms"] = _warm(16)
    doc["backends"][0]["photo_stages_ms"] = _warm(6)
    doc["backends"][1]["photo_stages_ms"] = {"images": 0, "reason": "fixed batch of 4: no per-image pipeline"}
    assert problems(doc, Report) == []
    rows = stage_rows(doc)
    assert rows[0] == ["pytorch", "16 val", "3", "1.00", "0.50", "4.00", "0.25", "5.75", "9.00"]
    assert rows[1][:2] == ["pytorch", "6 photos"]
    assert rows[3][:4] == ["onnxruntime", "0 photos", "-", "fixed batch of 4: no per-image pipeline"]
    assert _photo_e2e(doc) == ["5.75", "-"]
    doc["backends"][0]["stages_ms"]["warm_passes"] = "3"
    assert problems(doc, Report) != []  # the check sees a mistyped new key
