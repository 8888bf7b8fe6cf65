"""Re-baselining in this job (history.rebaseline): which benchmarks are paired, why the others are not,
what is loaded and timed, Holm over the session, and the lines and Markdown a CI job shows."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pytest

from _support.runs import identity, run_with
from detbench.history import artifacts as arts
from detbench.history.file import FileStore
from detbench.history.rebaseline import (
    PAIRED,
    UNPAIRED,
    Comparison,
    RebaselineSettings,
    Side,
    fails,
    markdown,
    rebaseline,
    with_unpaired,
)
from detbench.perf.sequential import NO_REGRESSION, REGRESSION, UNKNOWN, SequentialVerdict
from detbench.perf.stats import Verdict
from detbench.perf.timing import BlockPlan
from detbench.runtimes.identity import IDENTITY_KEY, BenchIdentity, artifact_content


def verdict(
    name: str, outcome: str = NO_REGRESSION, *, ratio: float = 1.0, p: float = 0.5
) -> SequentialVerdict:
    return SequentialVerdict(
        name=name,
        outcome=outcome,
        ratio=ratio,
        ci_low=ratio - 0.01,
        ci_high=ratio + 0.01,
        confidence=0.9989,
        p_value=p / 19,
        p_adjusted=p,
        alpha=0.01,
        min_effect=0.03,
        blocks=12,
        looks=1,
        looks_planned=19,
        seconds=1.0,
        reason="test",
    )


class Runner:
    def __init__(self, path: Path, log: list) -> None:
        self.path = path
        self.log = log

    def run(self, x: np.ndarray) -> np.ndarray:
        self.log.append(("run", self.path.read_bytes(), x.shape))
        return x


class Harness:
    """rebaseline with a loader that records what it loads and a compare that calls each side once."""

    def __init__(self, outcomes: dict[str, tuple[str, float]] | None = None) -> None:
        self.loaded: list[tuple[str, bytes]] = []
        self.runs: list = []
        self.outcomes = outcomes or {}

    def loader(self, ident: BenchIdentity, path: Path) -> Runner:
        self.loaded.append((ident.backend, Path(path).read_bytes()))
        return Runner(Path(path), self.runs)

    def compare(self, base_fn, cand_fn, *, name: str, **kwargs) -> SequentialVerdict:
        base_fn(), cand_fn()
        outcome, p = self.outcomes.get(name, (NO_REGRESSION, 0.5))
        return verdict(name, outcome, ratio=1.2 if outcome == REGRESSION else 1.0, p=p)

    def __call__(self, candidates, baselines, *, stores=(), tmp: Path, **kwargs) -> list[Comparison]:
        kwargs.setdefault("is_unavailable", lambda backend: None)
        return rebaseline(
            candidates,
            baselines,
            stores=stores,
            workdir=tmp / "work",
            loader=self.loader,
            compare=self.compare,
            **kwargs,
        )


def onnx_side(path: Path, **changes) -> Side:
    content = artifact_content(path)[0]
    ident = BenchIdentity.from_json(identity(content.sha256, size=content.size))
    return Side(dataclasses.replace(ident, **changes), str(path))


def eager_side(weights: Path) -> Side:
    ident = BenchIdentity.from_json(identity(None, fmt=None))
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    return Side(dataclasses.replace(ident, weights_sha256=sha), str(weights))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def stored(tmp: Path, *paths: Path, name: str = "hist") -> FileStore:
    """A file store that keeps the artifacts at ``paths`` (a saved run that timed them)."""
    store = FileStore(tmp / name)
    doc = run_with({f"t.py::test_{i}[onnxruntime]": p for i, p in enumerate(paths)})
    bundles, refused = arts.collect(doc)
    store.save(doc, artifacts=bundles, refused=refused)
    return store


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "old": write(tmp_path / "saved" / "old.onnx", b"old graph" * 50),
        "new": write(tmp_path / "now" / "new.onnx", b"new graph" * 50),
    }


NAME = "t.py::test_latency[onnxruntime]"


class TestPairing:
    def test_stored_baseline_is_restored_and_timed_beside_the_candidate(self, tmp_path, files) -> None:
        """The saved run's artifact comes out of the store byte for byte; both sides run one input."""
        store = stored(tmp_path, files["old"])
        h = Harness()
        (c,) = h(
            {NAME: onnx_side(files["new"])}, {NAME: onnx_side(files["old"])}, stores=[store], tmp=tmp_path
        )
        assert c.comparison == PAIRED and c.outcome == NO_REGRESSION and c.why == ""
        assert h.loaded == [
            ("onnxruntime", files["old"].read_bytes()),
            ("onnxruntime", files["new"].read_bytes()),
        ]
        assert [r[2] for r in h.runs] == [(1, 3, 128, 128)] * 2

    def test_identical_artifact_is_this_sessions_file(self, tmp_path, files) -> None:
        """Same sha256 on both sides: paired on this session's file, no store needed."""
        h = Harness()
        side = onnx_side(files["new"])
        (c,) = h({NAME: side}, {NAME: side}, stores=[], tmp=tmp_path)
        assert c.comparison == PAIRED
        assert [b for _, b in h.loaded] == [files["new"].read_bytes()] * 2

    def test_missing_artifact_falls_back_saying_so(self, tmp_path, files) -> None:
        """Not in any store: unpaired, the why names the stores, nothing loaded."""
        store = stored(tmp_path, files["new"])
        h = Harness()
        (c,) = h(
            {NAME: onnx_side(files["new"])}, {NAME: onnx_side(files["old"])}, stores=[store], tmp=tmp_path
        )
        assert c.comparison == UNPAIRED and c.paired is None
        assert c.why.startswith("artifact missing") and store.location in c.why
        assert h.loaded == []

    def test_tampered_artifact_is_refused_and_never_loaded(self, tmp_path, files) -> None:
        """A stored file whose bytes changed is refused (sha256) and not timed; a second store's good
        copy is used instead, with a note saying the first refused it."""
        bad = stored(tmp_path, files["old"], name="bad")
        sha = artifact_content(files["old"])[0].sha256
        write(bad.artifacts_dir / sha[:2] / sha, b"slow graph" * 50)
        h = Harness()
        cand, base = {NAME: onnx_side(files["new"])}, {NAME: onnx_side(files["old"])}
        (c,) = h(cand, base, stores=[bad], tmp=tmp_path)
        assert c.comparison == UNPAIRED and "refused it, not timed" in c.why and "sha256" in c.why
        assert h.loaded == []
        good = stored(tmp_path, files["old"], name="good")
        (c,) = Harness()(cand, base, stores=[bad, good], tmp=tmp_path / "again")
        assert c.comparison == PAIRED and any("refused it" in n for n in c.notes)

    def test_no_identity_in_the_saved_run(self, tmp_path, files) -> None:
        """A run saved before identities were recorded, or with a malformed one: unpaired, saying so."""
        h = Harness()
        cand = {NAME: onnx_side(files["new"])}
        (c,) = h(cand, {NAME: Side.from_extra_info({"backend": "onnxruntime"})}, tmp=tmp_path)
        assert c.why.startswith("no identity in the saved run")
        (c,) = h(cand, {NAME: Side.from_extra_info({IDENTITY_KEY: {"backend": 1}})}, tmp=tmp_path)
        assert c.why.startswith("its identity is malformed")
        assert h.loaded == []

    def test_backend_unavailable(self, tmp_path, files) -> None:
        side = onnx_side(files["new"])
        (c,) = Harness()(
            {NAME: side}, {NAME: side}, tmp=tmp_path, is_unavailable=lambda b: f"{b}: no runtime"
        )
        assert c.comparison == UNPAIRED and c.why == "onnxruntime: no runtime"

    def test_unloadable_baseline_falls_back(self, tmp_path, files) -> None:
        """A runtime that cannot load the artifact (here the real loader on bytes that are no ONNX)."""
        side = onnx_side(files["new"])
        (c,) = rebaseline(
            {NAME: side}, {NAME: side}, stores=[], workdir=tmp_path, is_unavailable=lambda b: None
        )
        assert c.comparison == UNPAIRED and c.why.startswith("backend unavailable: cannot load")

    def test_another_configuration_is_not_paired(self, tmp_path, files) -> None:
        """Threads (or batch, size, backend) changed: the pair would not time what was saved."""
        base = onnx_side(files["old"], threads=2, settings={"threads": 2, "ort_optimization": "all"})
        (c,) = Harness()({NAME: onnx_side(files["new"])}, {NAME: base}, tmp=tmp_path)
        assert c.why.startswith("the saved run timed another configuration") and "threads 2 -> 1" in c.why

    def test_candidate_changed_since_it_was_timed(self, tmp_path, files) -> None:
        side = onnx_side(files["new"])
        files["new"].write_bytes(b"rewritten")
        (c,) = Harness()({NAME: side}, {NAME: side}, tmp=tmp_path)
        assert c.why == "this session's artifact changed since it was timed"

    def test_runtime_version_change_is_noted(self, tmp_path, files) -> None:
        """Both sides run this session's runtime: the note says the runtime is held fixed."""
        side = onnx_side(files["new"])
        old = Side(dataclasses.replace(side.identity, versions={"onnxruntime": "0.9"}), side.artifact)
        (c,) = Harness()({NAME: side}, {NAME: old}, tmp=tmp_path)
        assert c.comparison == PAIRED
        (note,) = c.notes
        assert "onnxruntime 0.9 -> 1.0" in note and "holds the runtime fixed" in note and "ab --envs" in note
        (c,) = Harness()({NAME: side}, {NAME: side}, tmp=tmp_path / "same")
        assert c.notes == ()


class TestEagerPyTorch:
    @pytest.fixture
    def weights(self, tmp_path: Path) -> dict[str, Path]:
        return {
            "old": write(tmp_path / "old.pt", b"old weights"),
            "new": write(tmp_path / "new.pt", b"new weights"),
        }

    def test_other_weights_need_naming(self, tmp_path, weights) -> None:
        """Weights are never restored from a store: unnamed, they fall back, saying which option."""
        h = Harness()
        cand, base = {NAME: eager_side(weights["new"])}, {NAME: eager_side(weights["old"])}
        (c,) = h(cand, base, tmp=tmp_path)
        assert c.comparison == UNPAIRED and "weights not named" in c.why
        assert "--detbench-baseline-weights" in c.why and h.loaded == []

    def test_named_weights_must_be_the_saved_runs(self, tmp_path, weights) -> None:
        cand, base = {NAME: eager_side(weights["new"])}, {NAME: eager_side(weights["old"])}
        wrong = RebaselineSettings(baseline_weights=weights["new"])
        (c,) = Harness()(cand, base, tmp=tmp_path, settings=wrong)
        assert "is not the saved run's weights" in c.why
        h = Harness()
        (c,) = h(cand, base, tmp=tmp_path, settings=RebaselineSettings(baseline_weights=weights["old"]))
        assert c.comparison == PAIRED
        assert [b for _, b in h.loaded] == [b"old weights", b"new weights"]

    def test_same_weights_need_no_option(self, tmp_path, weights) -> None:
        side = eager_side(weights["new"])
        (c,) = Harness()({NAME: side}, {NAME: side}, tmp=tmp_path)
        assert c.comparison == PAIRED


def test_holm_over_the_sessions_benchmarks(tmp_path, files) -> None:
    """Two regressions at p 0.004 and 0.006 (look-corrected): Holm makes both 0.008, under alpha 0.01;
    at 0.006 and 0.009 the smaller becomes 0.012, and both are demoted to unknown, saying why."""
    side = onnx_side(files["new"])
    names = ["a[onnxruntime]", "b[onnxruntime]"]
    both = dict.fromkeys(names, side)
    out = Harness({names[0]: (REGRESSION, 0.004), names[1]: (REGRESSION, 0.006)})(both, both, tmp=tmp_path)
    assert [c.outcome for c in out] == [REGRESSION, REGRESSION]
    assert [c.paired.p_adjusted for c in out] == pytest.approx([0.008, 0.008])
    out = Harness({names[0]: (REGRESSION, 0.006), names[1]: (REGRESSION, 0.009)})(both, both, tmp=tmp_path)
    assert [c.outcome for c in out] == [UNKNOWN, UNKNOWN]
    assert all("not after Holm over 2 benchmarks" in c.paired.reason for c in out)


@pytest.mark.timing
def test_real_timing_finds_a_slower_candidate(tmp_path, files) -> None:
    """Through compare_sequential itself: a candidate that busy-waits 2x as long is a regression, and
    an equal one is not."""

    def busy(seconds: float):
        class Busy:
            def run(self, x):
                end = time.perf_counter() + seconds
                while time.perf_counter() < end:
                    pass

        return Busy()

    side = onnx_side(files["new"])
    slow = onnx_side(files["old"])
    plan = BlockPlan(blocks=16, block_calls=6, discard=1, settle_s=0.0)
    for cand_s, want in [(0.0006, REGRESSION), (0.0003, None)]:

        def loader(ident, path, cand_s=cand_s):
            return busy(cand_s if Path(path) == Path(side.artifact) else 0.0003)

        (c,) = rebaseline(
            {NAME: side},
            {NAME: slow},
            stores=[stored(tmp_path, files["old"], name=f"s{cand_s}")],
            workdir=tmp_path / f"w{cand_s}",
            settings=RebaselineSettings(plan=plan),
            loader=loader,
            is_unavailable=lambda b: None,
        )
        assert c.comparison == PAIRED
        if want is not None:
            assert c.outcome == want and c.paired.ratio > 1.5
        else:
            assert c.outcome != REGRESSION


class TestReport:
    def unpaired(self, name: str, status: str = "no change") -> Verdict:
        return Verdict(
            name=name,
            n_base=30,
            n_cand=30,
            median_base=2e-3,
            median_cand=2.1e-3,
            change=0.05,
            ci_low=0.01,
            ci_high=0.09,
            p_value=0.02,
            status=status,
        )

    def comparisons(self) -> list[Comparison]:
        paired = Comparison(name="a|x", paired=verdict("a|x", REGRESSION, ratio=1.5, p=1e-4), unpaired=None,
                            why="", notes=("runtime versions differ",))  # fmt: skip
        unknown = Comparison(name="b", paired=verdict("b", UNKNOWN), unpaired=None, why="", notes=())
        fell = Comparison(name="c", paired=None, unpaired=None, why="artifact missing: x", notes=())
        return with_unpaired([paired, unknown, fell], [self.unpaired("c"), self.unpaired("d")])

    def test_each_line_says_which_comparison(self) -> None:
        """Paired lines carry the ratio and interval; unpaired ones the why and the unpaired numbers."""
        a, _, c, d = self.comparisons()
        assert a.describe().startswith("a|x (paired in this job): regression: candidate/baseline 1.500")
        assert "CI 1.490-1.510" in a.describe()
        assert c.describe().startswith("c (unpaired across sessions; why: artifact missing: x): no change")
        assert "+5.0%" in c.describe() and "2.000 -> 2.100 ms" in c.describe()
        assert d.why == "not in both runs" and d.outcome == "no change"

    def test_exit_status(self) -> None:
        """A regression fails; an unknown fails only when asked; a problem or nothing compared fails."""
        a, b, c, d = self.comparisons()
        assert fails([a, c], [], unknown_fails=False)
        assert not fails([b, c, d], [], unknown_fails=False)
        assert fails([b, c], [], unknown_fails=True)
        assert fails([c], ["no raw rounds"], unknown_fails=False) and fails([], [], unknown_fails=False)

    def test_markdown_table(self) -> None:
        text = markdown(self.comparisons(), ["a problem"], unknown_fails=True)
        lines = text.splitlines()
        assert lines[2].startswith("| benchmark | comparison | verdict |")
        row = next(line for line in lines if line.startswith("| `a\\|x`"))
        assert "| paired in this job | **regression** | 1.500 (+50.0%) | 99.89% CI 1.490 – 1.510 |" in row
        assert "| `b` | paired in this job | **unknown** |" in text
        assert "| `c` | unpaired across sessions | no change | 1.050 (+5.0%) |" in text
        assert "why: artifact missing: x" in text and "- problem: a problem" in text
        assert lines[-1] == "**regression in** `a\\|x`"
        assert math.isfinite(self.comparisons()[0].paired.ci_high)
