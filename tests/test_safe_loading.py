"""Pickled checkpoints are code: the default baseline is unpickled only when its sha256 matches the pin."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest

import detbench
from detbench.cli import main
from detbench.errors import ModelFileError
from detbench.model import baseline as baseline_mod

PACKAGE = Path(detbench.__file__).parent

COMMITTED = baseline_mod.BASELINE_WEIGHTS  # read before any test monkeypatches it


class _Payload:
    """Unpickling this creates ``marker``: a stand-in for arbitrary code in a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def fixture_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty fixtures/baseline/ in tmp_path that detbench.model.baseline uses instead of the real one."""
    d = tmp_path / "fixtures" / "baseline"
    d.mkdir(parents=True)
    monkeypatch.setattr(baseline_mod, "BASELINE_DIR", d)
    monkeypatch.setattr(baseline_mod, "BASELINE_WEIGHTS", d / "best.pt")
    monkeypatch.setattr(baseline_mod, "PROVENANCE", d / "provenance.json")
    return d


@pytest.fixture(scope="module")
def original() -> bytes:
    """The committed baseline's bytes, or a small real checkpoint standing in while it is not committed."""
    if COMMITTED.is_file():
        return COMMITTED.read_bytes()
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"model": None, "train_args": {"imgsz": 128}, "w": torch.arange(64.0)}, buf)
    return buf.getvalue()


def _install(d: Path, weights: bytes, pinned: bytes) -> Path:
    (d / "best.pt").write_bytes(weights)
    (d / "provenance.json").write_text(
        json.dumps({"weights_sha256": _sha256(pinned), "synthetic_dataset": {"train": 4, "val": 2}})
    )
    return d / "best.pt"


class TestPinnedBaseline:
    def test_matching_fixture_is_accepted(self, fixture_dir: Path, original: bytes) -> None:
        """Control: the untampered fixture passes and is what resolve_weights(None) returns."""
        path = _install(fixture_dir, original, original)
        assert baseline_mod.baseline_weights() == path
        assert baseline_mod.resolve_weights(None) == path

    @pytest.mark.parametrize("where", ["first", "middle", "last"])
    def test_tampered_fixture_is_refused(self, fixture_dir: Path, original: bytes, where: str) -> None:
        """One flipped byte anywhere: refused with a message naming the file and its sha256."""
        i = {"first": 0, "middle": len(original) // 2, "last": len(original) - 1}[where]
        tampered = original[:i] + bytes([original[i] ^ 0xFF]) + original[i + 1 :]
        path = _install(fixture_dir, tampered, original)
        with pytest.raises(ModelFileError) as exc:
            baseline_mod.resolve_weights(None)
        assert exc.value.path == path
        assert str(path) in str(exc.value)
        assert "sha256" in str(exc.value)

    @pytest.mark.parametrize("missing", ["best.pt", "provenance.json"])
    def test_missing_fixture_file_is_refused(self, fixture_dir: Path, original: bytes, missing: str) -> None:
        """Without the checkpoint or its pin there is no default baseline, said plainly."""
        _install(fixture_dir, original, original)
        (fixture_dir / missing).unlink()
        with pytest.raises(ModelFileError, match="committed baseline missing"):
            baseline_mod.baseline_weights()


class TestMaliciousPickle:
    def test_payload_is_live(self, tmp_path: Path) -> None:
        """Control: unpickling the payload really does run code (creates the marker)."""
        marker = tmp_path / "pwned"
        pickle.loads(pickle.dumps({"model": _Payload(marker)}))
        assert marker.is_dir()

    def test_refused_before_unpickling(self, fixture_dir: Path, original: bytes, tmp_path: Path) -> None:
        """A malicious pickle in place of the fixture is refused by sha256; its code never runs."""
        marker = tmp_path / "pwned"
        path = _install(fixture_dir, pickle.dumps({"model": _Payload(marker)}), original)
        with pytest.raises(ModelFileError, match="sha256") as exc:
            baseline_mod.resolve_weights(None)
        assert exc.value.path == path
        assert not marker.exists(), "the checkpoint was unpickled before its sha256 was checked"

    def test_cli_refuses_it_in_one_line(
        self, fixture_dir: Path, original: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
    ) -> None:
        """`detbench export` with no --weights falls back to the fixture: refused, one line, no code run."""
        marker = tmp_path / "pwned"
        path = _install(fixture_dir, pickle.dumps({"model": _Payload(marker)}), original)
        assert main(["export", "--format", "onnx"]) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1
        assert str(path) in err[0]
        assert "sha256" in err[0]
        assert not marker.exists()


class TestExplicitWeights:
    def test_user_named_file_is_taken_as_is(self, tmp_path: Path) -> None:
        """A checkpoint the user names is their choice: returned without a pin (and without loading it)."""
        mine = tmp_path / "mine.pt"
        mine.write_bytes(b"not pinned anywhere")
        assert baseline_mod.resolve_weights(mine) == mine.resolve()

    def test_user_named_missing_file_is_refused(self, tmp_path: Path) -> None:
        """A named checkpoint that does not exist is a ModelFileError naming it."""
        with pytest.raises(ModelFileError, match=r"mine\.pt"):
            baseline_mod.resolve_weights(tmp_path / "mine.pt")


def _unsafe_loads(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "joblib.load"):
            found.append((node.lineno, name))
        elif name == "torch.load":
            safe = any(
                k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            )
            if not safe:
                found.append((node.lineno, "torch.load without weights_only=True"))
    return found


def test_package_never_unpickles_on_its_own() -> None:
    """detbench has no unpickling loader of its own: tensors (goldens) may only be read with
    ``torch.load(..., weights_only=True)``; checkpoints go through the sha256-pinned path above."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for lineno, what in _unsafe_loads(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{lineno}: {what}")
    assert not offenders, "unsafe deserialization:\n" + "\n".join(offenders)


def test_unsafe_load_detector_catches_both_forms() -> None:
    """Control for the scan above: flags bare torch.load and pickle.load, passes weights_only=True."""
    code = (
        "torch.load(p)\ntorch.load(p, weights_only=True)\npickle.load(f)\ntorch.load(p, weights_only=False)\n"
    )
    assert [line for line, _ in _unsafe_loads(ast.parse(code))] == [1, 3, 4]
