"""Records (detbench.schema): their JSON form, the check the schema tests run, and docs/schemas.md."""

from __future__ import annotations

import math
import runpy
from dataclasses import dataclass
from pathlib import Path

import pytest

from detbench.jsonsafe import json_safe
from detbench.schema import NanFloat, doc, from_json, json_type, problems, rows

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "write_schemas.py"


@dataclass(frozen=True, kw_only=True)
class Inner:
    p50: float = doc("median")
    mAP50_95: float | None = doc("renamed in JSON", key="mAP50-95")


@dataclass(frozen=True, kw_only=True)
class Outer:
    name: str = doc("a name")
    count: int = doc("a count")
    inner: Inner = doc("one nested record")
    by_key: dict[str, Inner] = doc("a map of records")
    items: list[Inner] = doc("an array of records")
    extra_ms: float | None = doc("left out while None", optional=True)


OUTER = Outer(
    name="a",
    count=3,
    inner=Inner(p50=1.5, mAP50_95=None),
    by_key={"1": Inner(p50=2, mAP50_95=0.5)},
    items=[Inner(p50=4.0, mAP50_95=0.25)],
)


class TestJsonForm:
    def test_keys_renames_optional_and_non_finite(self) -> None:
        """A record's JSON uses each field's key, drops an optional None and writes NaN as null."""
        assert json_safe(Inner(p50=float("nan"), mAP50_95=1.0)) == {"p50": None, "mAP50-95": 1.0}
        assert json_safe(OUTER) == {
            "name": "a",
            "count": 3,
            "inner": {"p50": 1.5, "mAP50-95": None},
            "by_key": {"1": {"p50": 2, "mAP50-95": 0.5}},
            "items": [{"p50": 4.0, "mAP50-95": 0.25}],
        }

    def test_from_json_builds_the_records_back(self) -> None:
        """from_json of a record's JSON gives the record back, its optional key absent or not."""
        doc = json_safe(OUTER)
        assert from_json(Outer, doc) == OUTER
        assert from_json(Outer, {**doc, "extra_ms": 2.5}).extra_ms == 2.5

    def test_from_json_refuses_missing_and_unexpected_keys(self) -> None:
        """A missing required key or a key the record lacks is an error naming where."""
        doc = json_safe(OUTER)
        del doc["inner"]["p50"]
        with pytest.raises(ValueError, match=r"\$\.inner: missing key 'p50'"):
            from_json(Outer, doc)
        with pytest.raises(ValueError, match=r"unexpected keys \['mAP50_95'\]"):
            from_json(Inner, {"p50": 1.0, "mAP50_95": 1.0})


class TestProblems:
    def test_a_record_s_own_json_has_none(self) -> None:
        """The JSON form of a record matches its type; an integer counts as a number."""
        assert problems(json_safe(OUTER), Outer) == []

    @pytest.mark.parametrize(
        ("edit", "expected"),
        [
            (lambda d: d.pop("count"), ["$: missing key 'count'"]),
            (lambda d: d["inner"].update({"median": d["inner"].pop("p50")}), None),
            (lambda d: d.update(count=3.0), ["$.count: 3.0 is not integer"]),
            (lambda d: d["by_key"]["1"].update(p50=True), ["$.by_key.1.p50: True is not number"]),
            (
                lambda d: d["items"][0].update({"mAP50-95": "x"}),
                ["$.items[0].mAP50-95: 'x' is not number or null"],
            ),
            (lambda d: d.update(inner=[]), ["$.inner: list where an object (Inner) belongs"]),
        ],
        ids=["missing", "renamed", "int-as-float", "bool-as-number", "string-in-union", "array-for-record"],
    )
    def test_each_mismatch_is_named_with_its_path(self, edit, expected: list[str] | None) -> None:
        """A missing, renamed or retyped key is reported at its path (a rename as both ends)."""
        doc = json_safe(OUTER)
        edit(doc)
        found = problems(doc, Outer)
        if expected is None:
            assert found == ["$.inner: unexpected key 'median'", "$.inner: missing key 'p50'"]
        else:
            assert found == expected


def test_a_float_that_may_be_nan_is_number_or_null() -> None:
    """NanFloat: JSON null is accepted and read back as NaN; a plain float field refuses null."""

    @dataclass(frozen=True)
    class Row:
        change: NanFloat = doc("may be NaN")
        p50: float = doc("never NaN")

    assert json_type(NanFloat) == "number or null"
    assert problems({"change": None, "p50": 1.0}, Row) == []
    assert problems({"change": 0.5, "p50": None}, Row) == ["$.p50: None is not number"]
    assert math.isnan(from_json(Row, {"change": None, "p50": 1.0}).change)


def test_schema_rows_give_paths_types_and_docs() -> None:
    """Every key, nested ones as paths, with its JSON type and doc; optional keys say so."""
    got = {path: (kind, text) for path, kind, text in rows(Outer)}
    assert got["by_key.*.mAP50-95"] == ("number or null", "renamed in JSON")
    assert got["items[].p50"] == ("number", "median")
    assert got["extra_ms"] == ("number or null, optional", "left out while None")
    assert json_type(dict[str, float | None]) == "map of (number or null)"


def test_committed_doc_is_the_generated_one() -> None:
    """docs/schemas.md is exactly what scripts/write_schemas.py writes from the records."""
    script = runpy.run_path(str(SCRIPT), run_name="write_schemas")
    assert script["DOC"].read_text(encoding="utf-8") == script["text"](), (
        "docs/schemas.md is stale: run python scripts/write_schemas.py"
    )
