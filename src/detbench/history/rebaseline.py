"""Re-baselining in this job (issue 19): a compared run's artifacts timed again beside this session's.

``pytest --benchmark-compare --detbench-compare-fail`` compares this session with a run saved by
another session, often on another runner; sessions drift by tens of per cent, so an unpaired
comparison sees only gross changes. For every benchmark of the compared run, ``rebaseline`` instead:

1. reads both sides' ``BenchIdentity`` (the saved run's, this session's);
2. finds the baseline's artifact: this session's own file when the sha256 is the same, else the
   local history (``<cache>/history``) and then the shared store, each read checked against its
   sha256 (a tampered artifact is refused and never timed); eager PyTorch runs weights, which no
   store keeps, so it needs them named (``--detbench-baseline-weights``) unless they are this
   session's;
3. loads baseline and candidate with the candidate's backend and settings, and times both in
   alternated blocks with the sequential three-way verdict (``perf.sequential.compare_sequential``);
4. applies Holm's correction over the session's paired verdicts.

A benchmark that cannot be paired gets ``why`` instead of a verdict, and the caller judges it with the
unpaired gate (``perf.gate.compare_benchmark_session``), saying why. Both sides run this session's
runtime, so a runtime version change is held fixed, not measured (``note`` says so): that change
is ``detbench ab --envs``'s job.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from detbench.errors import DetbenchError, HistoryStoreError, StoredArtifactError
from detbench.perf.gate import format_table
from detbench.perf.sequential import REGRESSION, UNKNOWN, SequentialVerdict, compare_sequential, holm
from detbench.perf.stats import GATE_ALPHA, PAIRED_MIN_EFFECT, Verdict
from detbench.perf.timing import BlockPlan
from detbench.runtimes.identity import IDENTITY_KEY, BenchIdentity, artifact_content, weights_sha256
from detbench.schema import doc

PAIRED = "paired in this job"
UNPAIRED = "unpaired across sessions"
WEIGHTS_OPTION = "--detbench-baseline-weights"
CANDIDATE_WEIGHTS_OPTION = "--candidate-weights"
PLANS = {"full": BlockPlan.SEQUENTIAL, "quick": BlockPlan.SEQUENTIAL_QUICK}  # --detbench-rebaseline-plan


@dataclass(frozen=True)
class Side:
    """One side of a benchmark as its run recorded it: what it timed, and where the file was then."""

    identity: BenchIdentity | None
    artifact: str | None  # extra_info["artifact"]: the path on the machine that timed it
    problem: str = ""  # why ``identity`` is None: absent, or malformed

    @classmethod
    def stored(cls, identity: BenchIdentity | None) -> Side:
        """A side known only from a history store (``detbench gate --history``): its artifact is
        restored from the store by sha256, its eager weights must be named."""
        return cls(identity, None, "" if identity is not None else cls.from_extra_info(None).problem)

    @classmethod
    def from_extra_info(cls, extra: Any) -> Side:
        if not isinstance(extra, Mapping) or IDENTITY_KEY not in extra:
            return cls(None, None, "no identity in the saved run (saved before detbench recorded one)")
        path = extra.get("artifact")
        try:
            ident = BenchIdentity.from_json(extra[IDENTITY_KEY])
        except (ValueError, TypeError) as exc:
            return cls(None, None, f"its identity is malformed ({exc})")
        return cls(ident, path if isinstance(path, str) else None)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """How one benchmark was judged: paired in this job (``paired``) or unpaired across sessions
    (``unpaired``, with ``why``)."""

    name: str = doc("the benchmark (pytest-benchmark fullname)")
    paired: SequentialVerdict | None = doc("the sequential verdict when both sides were timed here")
    unpaired: Verdict | None = doc("the unpaired gate's verdict on the two sessions' rounds, otherwise")
    why: str = doc('why it was not paired; "" when it was')
    notes: tuple[str, ...] = doc("what the reader should know: runtime versions differ, a store refused")

    @property
    def comparison(self) -> str:
        return PAIRED if self.paired is not None else UNPAIRED

    @property
    def outcome(self) -> str:
        """regression, no regression or unknown (paired); the unpaired gate's status; else "not judged"
        (no raw rounds saved: the session's problems say so)."""
        if self.paired is not None:
            return self.paired.outcome
        return self.unpaired.status if self.unpaired is not None else "not judged"

    @property
    def regressed(self) -> bool:
        return self.outcome == REGRESSION

    @property
    def unknown(self) -> bool:
        return self.paired is not None and self.paired.outcome == UNKNOWN

    def describe(self) -> str:
        """One line: the benchmark, which comparison it got (and why), the outcome, ratio and interval."""
        if self.paired is not None:
            return f"{self.name} ({PAIRED}): {self.paired.describe().removeprefix(f'{self.name}: ')}"
        head = f"{self.name} ({UNPAIRED}; why: {self.why})"
        v = self.unpaired
        if v is None or math.isnan(v.change):
            return f"{head}: {self.outcome}"
        return (
            f"{head}: {v.status}: candidate/baseline {1 + v.change:.3f} ({v.change:+.1%}; median "
            f"{v.median_base * 1e3:.3f} -> {v.median_cand * 1e3:.3f} ms; CI {v.ci_low:+.1%} to "
            f"{v.ci_high:+.1%}; p {v.p_value:.2g}; {v.n_base}/{v.n_cand} rounds)"
        )


@dataclass(frozen=True)
class RebaselineSettings:
    """How ``rebaseline`` times and judges (the plugin's options)."""

    plan: BlockPlan = BlockPlan.SEQUENTIAL
    alpha: float = GATE_ALPHA
    min_effect: float = PAIRED_MIN_EFFECT
    max_seconds: float | None = None  # per benchmark; None: the plan's block cap only
    baseline_weights: Path | None = None  # --detbench-baseline-weights
    candidate_weights: Path | None = None  # detbench gate --history's --candidate-weights
    baseline_weights_option: str = WEIGHTS_OPTION  # how the why names them (the CLI's spelling differs)
    candidate_weights_option: str = CANDIDATE_WEIGHTS_OPTION


class ArtifactSource(Protocol):
    """What ``rebaseline`` reads a stored artifact from (a history ``Store``)."""

    location: str

    def get_artifact(self, sha256: str, dest: Path) -> Path: ...


class Runner(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray: ...


def load_backend(ident: BenchIdentity, path: Path) -> Runner:
    """The backend ``ident`` names, with the settings it records, loaded on ``path``."""
    from detbench.runtimes.backends import BackendSettings, PyTorchBackend, create

    known = {f.name for f in dataclasses.fields(BackendSettings)}
    if set(ident.settings) - known:
        raise DetbenchError(f"settings this detbench does not know: {sorted(set(ident.settings) - known)}")
    backend = create(ident.backend, BackendSettings(**ident.settings))
    backend.load(path)
    if isinstance(backend, PyTorchBackend):  # eager models take any size: pin the one that was timed
        backend.set_imgsz(ident.imgsz)
    return backend


def unavailable(backend: str) -> str | None:
    """Why ``backend`` cannot run here (not registered, its runtime absent), or None."""
    from detbench.runtimes.backends import REGISTRY

    cls = REGISTRY.get(backend)
    if cls is None:
        return f"backend {backend!r} is not registered in this detbench"
    reason = cls.unavailable()
    return f"backend unavailable: {reason}" if reason else None


def synthetic_input(ident: BenchIdentity) -> np.ndarray:
    """One fixed batch of the timed shape: the raw head's cost does not depend on pixel values, and
    both sides get the same array."""
    rng = np.random.default_rng(0)
    return rng.random((ident.batch, 3, ident.imgsz, ident.imgsz), dtype=np.float32)


def _configuration(ident: BenchIdentity) -> dict[str, Any]:
    return {"backend": ident.backend, "batch": ident.batch, "imgsz": ident.imgsz, **ident.settings}


def configuration_change(base: BenchIdentity, cand: BenchIdentity) -> str:
    """What differs between the two sides' backend, batch, size and settings ("" when nothing)."""
    a, b = _configuration(base), _configuration(cand)
    keys = sorted(a.keys() | b.keys())
    return ", ".join(f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k))


def version_note(base: BenchIdentity, cand: BenchIdentity) -> str:
    """The line a paired verdict carries when the runtime versions differ from the saved run's."""
    keys = sorted(base.versions.keys() | cand.versions.keys())
    changed = [
        f"{k} {base.versions.get(k, '-')} -> {cand.versions.get(k, '-')}"
        for k in keys
        if base.versions.get(k) != cand.versions.get(k)
    ]
    if not changed:
        return ""
    return (
        f"runtime versions differ from the saved run's ({', '.join(changed)}): the re-timing runs both "
        "artifacts on this session's runtime, so it holds the runtime fixed and measures the artifact "
        "change only; the runtime change itself is `detbench ab --envs`'s job"
    )


@dataclass
class _Restorer:
    """Baseline artifacts restored from the stores into ``workdir``, once per sha256."""

    stores: Sequence[ArtifactSource]
    workdir: Path
    done: dict[str, tuple[Path | None, str, tuple[str, ...]]] = field(default_factory=dict)

    def get(self, sha256: str, whose: str = "baseline") -> tuple[Path | None, str, tuple[str, ...]]:
        """(path, why not, notes): the first store that hands out the artifact; a store that refuses
        it (tampered, corrupt, unreachable) is noted and the next one tried."""
        if sha256 not in self.done:
            refused, missing = [], []
            found: Path | None = None
            for i, store in enumerate(self.stores):
                try:
                    found = store.get_artifact(sha256, self.workdir / f"{sha256[:16]}-{i}")
                    break
                except StoredArtifactError as exc:
                    if exc.reason.endswith(": not stored"):
                        missing.append(store.location)
                    else:
                        refused.append(f"{store.location} refused it, not timed: {exc.reason}")
                except HistoryStoreError as exc:
                    refused.append(str(exc))
            if found is not None:
                self.done[sha256] = (found, "", tuple(refused))
            elif refused:
                self.done[sha256] = (None, "; ".join(refused), ())
            else:
                where = ", ".join(missing) or "no store"
                self.done[sha256] = (None, f"artifact missing: the {whose}'s artifact is not in {where}", ())
        return self.done[sha256]


def _candidate_problem(cand: Side) -> str:
    """Why this session's side cannot be re-timed from its own file ("" when it can)."""
    ident = cand.identity
    if ident is None:
        return f"the candidate's benchmark records no identity ({cand.problem})"
    if cand.artifact is None or not Path(cand.artifact).exists():
        return "this session's artifact is not on disk any more"
    try:
        if ident.artifact_sha256 is None:
            same = weights_sha256(cand.artifact) == ident.weights_sha256
        else:
            same = artifact_content(cand.artifact)[0].sha256 == ident.artifact_sha256
    except OSError as exc:
        return f"this session's artifact cannot be read ({exc})"
    return "" if same else "this session's artifact changed since it was timed"


def _named_weights(want: str, named: Path | None, option: str, whose: str) -> tuple[Path | None, str]:
    """Eager PyTorch weights named by ``option``, checked against the run's ``want`` sha256."""
    if named is None:
        return None, (
            f"weights not named: eager PyTorch runs the weights, a pickle no store keeps; pass "
            f"{option} PATH (sha256 {want[:12]}…)"
        )
    try:
        got = weights_sha256(named)
    except OSError as exc:
        return None, f"{option} {named}: cannot be read ({exc})"
    if got != want:
        return None, (
            f"{option} {named} is not the {whose} weights (sha256 {got[:12]}…, the {whose} {want[:12]}…)"
        )
    return named, ""


def _baseline_weights(
    base: BenchIdentity, cand: BenchIdentity, cand_path: Path, settings: RebaselineSettings
) -> tuple[Path | None, str]:
    """Eager PyTorch's baseline: the candidate's weights when they are the saved run's, else named ones."""
    if base.weights_sha256 == cand.weights_sha256:
        return cand_path, ""
    return _named_weights(
        base.weights_sha256, settings.baseline_weights, settings.baseline_weights_option, "saved run's"
    )


def _candidate_path(
    cand: Side, restorer: _Restorer, settings: RebaselineSettings
) -> tuple[Path | None, str, tuple[str, ...]]:
    """(path, why not, notes) of the candidate's artifact: its own file when it is still what was timed
    (a session's), else the stores' copy by sha256 (a stored run's, ``Side.stored``); eager weights
    must be on disk or named."""
    ident = cand.identity
    problem = _candidate_problem(cand)
    if not problem or ident is None:
        return (Path(cand.artifact) if not problem and cand.artifact else None), problem, ()
    if cand.artifact is not None and (not restorer.stores or ident.artifact_sha256 is None):
        return None, problem, ()  # a session's file that nothing can stand in for: say what is wrong with it
    if ident.artifact_sha256 is None:
        path, why = _named_weights(
            ident.weights_sha256, settings.candidate_weights, settings.candidate_weights_option, "candidate's"
        )
        return path, why, ()
    path, why, notes = restorer.get(ident.artifact_sha256, "candidate")
    if path is None and cand.artifact is not None:
        why = f"{problem}, and {why.removeprefix('artifact missing: ')}"
    return path, why, notes


def rebaseline(
    candidates: Mapping[str, Side],
    baselines: Mapping[str, Side],
    *,
    stores: Sequence[ArtifactSource],
    workdir: Path,
    settings: RebaselineSettings = RebaselineSettings(),
    loader: Callable[[BenchIdentity, Path], Runner] = load_backend,
    compare: Callable[..., SequentialVerdict] = compare_sequential,
    make_input: Callable[[BenchIdentity], np.ndarray] = synthetic_input,
    is_unavailable: Callable[[str], str | None] = unavailable,
    progress: Callable[[str], object] | None = None,
) -> list[Comparison]:
    """One Comparison per benchmark in both ``candidates`` (this session's) and ``baselines`` (the
    compared run's), sorted by name: a Holm-corrected sequential verdict where both sides could be
    timed here, else ``why`` (and no verdict: the caller adds the unpaired one)."""
    out: list[Comparison] = []
    restorer = _Restorer(stores, Path(workdir))
    for name in sorted(candidates.keys() & baselines.keys()):
        cand, base = candidates[name], baselines[name]

        def fallback(why: str, notes: tuple[str, ...] = (), name: str = name) -> None:
            out.append(Comparison(name=name, paired=None, unpaired=None, why=why, notes=notes))

        if base.identity is None:
            fallback(base.problem)
            continue
        cand_path, why, notes = _candidate_path(cand, restorer, settings)
        if cand_path is None or cand.identity is None:
            fallback(why, notes)
            continue
        change = configuration_change(base.identity, cand.identity)
        if change:
            fallback(f"the saved run timed another configuration ({change})")
            continue
        why = is_unavailable(cand.identity.backend) or ""
        if why:
            fallback(why)
            continue
        sha = base.identity.artifact_sha256
        if sha is None:
            base_path, why = _baseline_weights(base.identity, cand.identity, cand_path, settings)
        elif sha == cand.identity.artifact_sha256:
            base_path = cand_path  # the same bytes, already checked against the sha256
        else:
            base_path, why, more = restorer.get(sha)
            notes += more
        if base_path is None:
            fallback(why, notes)
            continue
        if progress is not None:
            progress(f"{name}: timing the saved run's artifact beside the candidate's")
        try:
            base_runner = loader(cand.identity, base_path)
            cand_runner = loader(cand.identity, cand_path)
        except (DetbenchError, ImportError, RuntimeError, OSError) as exc:
            fallback(f"backend unavailable: cannot load ({type(exc).__name__}: {exc})", notes)
            continue
        x = make_input(cand.identity)
        try:
            verdict = compare(
                functools.partial(base_runner.run, x),
                functools.partial(cand_runner.run, x),
                plan=settings.plan,
                name=name,
                alpha=settings.alpha,
                min_effect=settings.min_effect,
                max_seconds=settings.max_seconds,
            )
        except (DetbenchError, RuntimeError) as exc:
            fallback(f"timing failed ({type(exc).__name__}: {exc})", notes)
            continue
        finally:
            del base_runner, cand_runner  # one pair of runtimes loaded at a time
        note = version_note(base.identity, cand.identity)
        notes += (note,) if note else ()
        out.append(Comparison(name=name, paired=verdict, unpaired=None, why="", notes=notes))
    paired = [c for c in out if c.paired is not None]
    corrected = holm([c.paired for c in paired if c.paired is not None]) if paired else []
    fixed = {c.name: dataclasses.replace(c, paired=v) for c, v in zip(paired, corrected)}
    return [fixed.get(c.name, c) for c in out]


def with_unpaired(comparisons: Sequence[Comparison], verdicts: Sequence[Verdict]) -> list[Comparison]:
    """The comparisons with the unpaired gate's verdicts attached to those that were not paired; a
    verdict on a benchmark ``rebaseline`` never saw becomes a comparison of its own."""
    by_name = {v.name: v for v in verdicts}
    out = [
        dataclasses.replace(c, unpaired=by_name.get(c.name)) if c.paired is None else c for c in comparisons
    ]
    seen = {c.name for c in out}
    out += [
        Comparison(name=v.name, paired=None, unpaired=v, why="not in both runs", notes=())
        for v in verdicts
        if v.name not in seen
    ]
    return sorted(out, key=lambda c: c.name)


def fails(comparisons: Sequence[Comparison], problems: Sequence[str], *, unknown_fails: bool) -> bool:
    """The session's exit status is 1: a regression (paired or not), a problem, nothing compared, or
    with ``unknown_fails`` (--detbench-unknown=fail) a paired verdict left unknown."""
    bad = any(c.regressed or (c.unknown and unknown_fails) for c in comparisons)
    return bool(problems) or not comparisons or bad


# -- rendering: the terminal's lines and the step summary's Markdown --------------------------------


def unpaired_table(comparisons: Sequence[Comparison]) -> str:
    """The unpaired gate's table (perf.gate.format_table) for the comparisons that fell back ("" if none)."""
    verdicts = [c.unpaired for c in comparisons if c.unpaired is not None and c.paired is None]
    return format_table(verdicts) if verdicts else ""


PLUGIN_TITLE = "detbench gate (`--detbench-compare-fail`)"
HISTORY_TITLE = "detbench gate (`--history`)"


@dataclass(frozen=True)
class Line:
    """One line of the gate's terminal section; ``style`` is how the plugin colours it."""

    text: str
    style: str = ""  # "bad", "good", "warn" or ""


def summary_lines(
    comparisons: Sequence[Comparison],
    problems: Sequence[str],
    *,
    unknown_fails: bool,
    unknown_option: str = "--detbench-unknown",
) -> list[Line]:
    """What the plugin's terminal summary and ``detbench gate --history`` print: one line per benchmark
    (which comparison it got, its verdict) with its notes, the unpaired table, the problems and one
    verdict line."""
    out = []
    for c in comparisons:
        bad = c.regressed or (c.unknown and unknown_fails)
        out.append(Line(c.describe(), "bad" if bad else "good" if c.outcome == "no regression" else ""))
        out += [Line(f"    note: {note}") for note in c.notes]
    table = unpaired_table(comparisons)
    if table:
        out.append(Line(f"unpaired across sessions:\n{table}"))
    out += [Line(f"detbench gate: {p}", "bad") for p in problems]
    regressed = [c.name for c in comparisons if c.regressed]
    unknown = [c.name for c in comparisons if c.unknown]
    if unknown:
        verdict = "fails" if unknown_fails else f"passes ({unknown_option}=fail fails it)"
        out.append(
            Line(
                f"detbench gate: unknown in {', '.join(unknown)}: {verdict}",
                "bad" if unknown_fails else "warn",
            )
        )
    if regressed:
        out.append(Line(f"detbench gate: regression in {', '.join(regressed)}", "bad"))
    elif not comparisons and not problems:
        out.append(Line("detbench gate: no benchmark in both runs", "bad"))
    elif not problems and not (unknown and unknown_fails):
        out.append(Line("detbench gate: no regression", "good"))
    return out


def write_step_summary(
    comparisons: Sequence[Comparison],
    problems: Sequence[str],
    *,
    unknown_fails: bool,
    title: str = PLUGIN_TITLE,
) -> Path | None:
    """Append the verdict table to ``$GITHUB_STEP_SUMMARY`` as Markdown when GitHub Actions sets it
    (other steps' summaries are kept); the file written, or None."""
    import os

    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return None
    with open(path, "a", encoding="utf-8") as f:
        f.write(markdown(comparisons, problems, unknown_fails=unknown_fails, title=title))
    return Path(path)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(
    comparisons: Sequence[Comparison],
    problems: Sequence[str],
    *,
    unknown_fails: bool,
    title: str = PLUGIN_TITLE,
) -> str:
    """The verdict table as GitHub-flavoured Markdown, for ``$GITHUB_STEP_SUMMARY``."""
    lines = [
        f"### {title}",
        "",
        "| benchmark | comparison | verdict | candidate / baseline | interval | why, notes |",
        "|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        ratio = interval = "-"
        if c.paired is not None:
            v = c.paired
            high = f"{v.ci_high:.3f}" if math.isfinite(v.ci_high) else "∞"
            ratio = f"{v.ratio:.3f} ({v.change:+.1%})"
            interval = f"{v.confidence:.2%} CI {v.ci_low:.3f} – {high}"
        elif c.unpaired is not None and not math.isnan(c.unpaired.change):
            u = c.unpaired
            ratio = f"{1 + u.change:.3f} ({u.change:+.1%})"
            interval = f"change {u.ci_low:+.1%} – {u.ci_high:+.1%}"
        why = "; ".join([*([f"why: {c.why}"] if c.why else []), *c.notes])
        verdict = f"**{c.outcome}**" if c.regressed or (c.unknown and unknown_fails) else c.outcome
        lines.append(
            f"| `{_md(c.name)}` | {c.comparison} | {verdict} | {ratio} | {interval} | {_md(why) or '-'} |"
        )
    lines.append("")
    lines += [f"- problem: {_md(p)}" for p in problems]
    regressed = [c.name for c in comparisons if c.regressed]
    names = ", ".join(f"`{_md(n)}`" for n in regressed)
    lines.append(f"**regression in** {names}" if regressed else "no regression")
    return "\n".join(lines) + "\n"
