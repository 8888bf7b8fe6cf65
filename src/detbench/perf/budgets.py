"""Size and latency budgets (``fixtures/budgets.toml``) and the checks that judge them.

Three kinds, all machine-independent except the last:

- ``[size.<format>]``: an artifact's bytes <= ``max_ratio`` x the bytes of ``relative_to`` (the
  baseline ``checkpoint`` or another export format). Sizes are deterministic, so this is exact.
- ``[latency."<name>"]``: numerator backend / denominator backend latency <= ``max_ratio``, both
  timed in alternated blocks of one run (``timing.steady_state``) so machine speed and drift cancel;
  the block medians are paired and judged by ``stats.check_ratio_budget(paired=True)``: fails when
  the typical block ratio AND its whole paired 95% CI exceed it. The ratio between two runtimes moves
  with the CPU generation (docs/measurements.md), so an entry holds
  ``by_machine = {"<machine id>" = bound}``: on a machine listed there its own bound applies, at most
  10 % above the highest ratio measured on it (over the torch envs), so a 15 % slowdown of either
  side fails it; elsewhere the general ``max_ratio`` applies, a round promise for machines nobody
  measured, no tighter than any listed machine's bound (so loose on the fastest one).
- ``[absolute."<machine id>"]``: median milliseconds per backend, applied only on the machine with
  that id (``detbench.perf.machine.machine_id``) and at the table's ``threads``. Owners of a CI machine
  add their own table; everyone else skips it.

Each entry may carry ``measured = {...}`` recording what was measured and by which command;
``scripts/measure_budgets.py`` prints those tables. The checks never read ``measured``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from detbench.errors import DetbenchError
from detbench.paths import FIXTURES
from detbench.perf.stats import BudgetResult, check_ratio_budget, median_ci
from detbench.perf.timing import BlockPlan, block_medians
from detbench.runtimes.backends import REGISTRY
from detbench.runtimes.export import FORMATS

BUDGETS_FILE = FIXTURES / "budgets.toml"
MAX_HEADROOM = 1.10
"""A committed latency ratio budget may be at most this factor above its measured ratio."""
SIZE_REFERENCES = ("checkpoint", *FORMATS)
_SECTIONS = ("size", "latency", "absolute")
_ABSOLUTE_SETTINGS = ("threads", "batch", "measured")


class BudgetError(DetbenchError):
    """The budgets file is missing or malformed; names the file and the entry at fault."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class SizeBudget:
    artifact: str  # an export format
    relative_to: str  # "checkpoint" or another export format
    max_ratio: float
    measured: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        return f"size {self.artifact} <= {self.max_ratio:g} x {self.relative_to}"


@dataclass(frozen=True)
class LatencyBudget:
    name: str
    numerator: str  # backend names
    denominator: str
    max_ratio: float
    batch: int = 1
    measured: Mapping[str, Any] | None = None
    # The budget applies only on CPUs with at least one of these flags (empty: everywhere). INT8's
    # advantage depends on int8 dot-product instructions (VNNI, AMX), absent on many x86 CPUs.
    cpu_flags_any: tuple[str, ...] = ()
    # Bounds of the machines this ratio was measured on (machine id -> max_ratio); see the docstring.
    by_machine: Mapping[str, float] = field(default_factory=dict)

    def applies_to(self, flags: set[str]) -> bool:
        return not self.cpu_flags_any or bool(flags & set(self.cpu_flags_any))

    def on(self, machine: str) -> LatencyBudget:
        """This budget with the bound that holds on ``machine``: its own if measured, else the general one."""
        return replace(self, max_ratio=self.by_machine.get(machine, self.max_ratio))


@dataclass(frozen=True)
class AbsoluteBudget:
    machine: str
    backend: str
    max_ms: float
    threads: int = 1
    batch: int = 1

    @property
    def name(self) -> str:
        return f"absolute {self.backend} batch{self.batch} <= {self.max_ms:g} ms on {self.machine}"


@dataclass(frozen=True)
class Budgets:
    source: Path
    size: tuple[SizeBudget, ...] = ()
    latency: tuple[LatencyBudget, ...] = ()
    absolute: tuple[AbsoluteBudget, ...] = field(default=())

    def absolute_for(self, machine: str) -> tuple[AbsoluteBudget, ...]:
        """Absolute budgets of ``machine`` only: another machine's milliseconds say nothing here."""
        return tuple(b for b in self.absolute if b.machine == machine)

    def latency_for(self, machine: str) -> tuple[LatencyBudget, ...]:
        """The latency budgets with the bounds that hold on ``machine`` (``LatencyBudget.on``)."""
        return tuple(b.on(machine) for b in self.latency)


# -------------------------------------------------------------------------------------------------
# Loading


def _table(source: Path, value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BudgetError(source, f"{where} must be a table, got {type(value).__name__}")
    return value


def _positive(source: Path, value: object, where: str) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):
        raise BudgetError(source, f"{where} must be a positive number, got {value!r}")
    return float(value)


def _count(source: Path, value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BudgetError(source, f"{where} must be an integer >= 1, got {value!r}")
    return value


def _choice(source: Path, value: object, choices: Sequence[str], where: str) -> str:
    if value not in choices:
        raise BudgetError(source, f"{where} is {value!r}; choose from {', '.join(choices)}")
    return str(value)


def _only(source: Path, entry: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    extra = sorted(set(entry) - set(allowed))
    if extra:
        raise BudgetError(
            source, f"{where}: unknown key(s) {', '.join(extra)}; allowed: {', '.join(allowed)}"
        )


def _measured(source: Path, entry: Mapping[str, Any], where: str) -> Mapping[str, Any] | None:
    value = entry.get("measured")
    return None if value is None else _table(source, value, f"{where}.measured")


def _size(source: Path, artifact: str, raw: object) -> SizeBudget:
    where = f"[size.{artifact}]"
    entry = _table(source, raw, where)
    _only(source, entry, ("relative_to", "max_ratio", "measured"), where)
    _choice(source, artifact, FORMATS, f"{where} artifact")
    ref = _choice(source, entry.get("relative_to"), SIZE_REFERENCES, f"{where} relative_to")
    if ref == artifact:
        raise BudgetError(source, f"{where} relative_to must name a different artifact")
    return SizeBudget(
        artifact,
        ref,
        _positive(source, entry.get("max_ratio"), f"{where} max_ratio"),
        _measured(source, entry, where),
    )


def _latency(source: Path, name: str, raw: object) -> LatencyBudget:
    where = f'[latency."{name}"]'
    entry = _table(source, raw, where)
    _only(
        source,
        entry,
        ("numerator", "denominator", "max_ratio", "batch", "measured", "cpu_flags_any", "by_machine"),
        where,
    )
    flags = entry.get("cpu_flags_any", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) and f for f in flags):
        raise BudgetError(source, f"{where} cpu_flags_any must be a list of CPU flag names")
    num = _choice(source, entry.get("numerator"), list(REGISTRY), f"{where} numerator")
    den = _choice(source, entry.get("denominator"), list(REGISTRY), f"{where} denominator")
    if num == den:
        raise BudgetError(source, f"{where} numerator and denominator are both {num!r}")
    return LatencyBudget(
        name,
        num,
        den,
        _positive(source, entry.get("max_ratio"), f"{where} max_ratio"),
        _count(source, entry.get("batch", 1), f"{where} batch"),
        _measured(source, entry, where),
        tuple(flags),
        {
            machine: _positive(source, bound, f"{where} by_machine.{machine}")
            for machine, bound in _table(source, entry.get("by_machine", {}), f"{where} by_machine").items()
        },
    )


def _absolute(source: Path, machine: str, raw: object) -> list[AbsoluteBudget]:
    where = f'[absolute."{machine}"]'
    entry = _table(source, raw, where)
    _only(source, entry, (*_ABSOLUTE_SETTINGS, *REGISTRY), where)
    threads = _count(source, entry.get("threads", 1), f"{where} threads")
    batch = _count(source, entry.get("batch", 1), f"{where} batch")
    return [
        AbsoluteBudget(machine, backend, _positive(source, value, f"{where} {backend}"), threads, batch)
        for backend, value in entry.items()
        if backend not in _ABSOLUTE_SETTINGS
    ]


def parse_budgets(doc: Mapping[str, Any], source: Path | str = "<budgets>") -> Budgets:
    """Validate a parsed budgets document; every error names ``source`` and the entry."""
    source = Path(source)
    _only(source, doc, _SECTIONS, "top level")
    size = [_size(source, k, v) for k, v in _table(source, doc.get("size", {}), "[size]").items()]
    latency = [_latency(source, k, v) for k, v in _table(source, doc.get("latency", {}), "[latency]").items()]
    absolute = [
        b
        for k, v in _table(source, doc.get("absolute", {}), "[absolute]").items()
        for b in _absolute(source, k, v)
    ]
    return Budgets(source, tuple(size), tuple(latency), tuple(absolute))


def loads(text: str, source: Path | str = "<budgets>") -> Budgets:
    """Parse and validate budgets TOML text."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BudgetError(source, f"not valid TOML ({exc})") from exc
    return parse_budgets(doc, source)


def load_budgets(path: Path | str = BUDGETS_FILE) -> Budgets:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BudgetError(path, "budgets file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BudgetError(path, f"cannot read it ({exc})") from exc
    return loads(text, path)


# -------------------------------------------------------------------------------------------------
# Checks


@dataclass(frozen=True)
class SizeResult:
    name: str
    size_bytes: int
    reference_bytes: int
    ratio: float
    max_ratio: float
    passed: bool
    reason: str


def check_size(budget: SizeBudget, size_bytes: int, reference_bytes: int) -> SizeResult:
    """Exact: sizes do not fluctuate, so no confidence interval."""
    if reference_bytes <= 0:
        raise ValueError(f"{budget.name}: reference size must be > 0 bytes, got {reference_bytes}")
    ratio = size_bytes / reference_bytes
    passed = ratio <= budget.max_ratio
    verb = "<=" if passed else ">"
    reason = (
        f"{budget.artifact} is {size_bytes / 1e6:.2f} MB = {ratio:.3f} x {budget.relative_to} "
        f"({reference_bytes / 1e6:.2f} MB) {verb} budget {budget.max_ratio:g}"
    )
    return SizeResult(budget.name, size_bytes, reference_bytes, ratio, budget.max_ratio, passed, reason)


def check_latency(
    budget: LatencyBudget,
    num: Sequence[float] | np.ndarray,
    den: Sequence[float] | np.ndarray,
    *,
    paired: bool = False,
    seed: int = 0,
) -> BudgetResult:
    """Judge seconds-per-call of numerator and denominator against the budget.

    ``paired``: side-by-side block medians of one alternated run (what :func:`measure_latency`
    passes); otherwise two independent sample sets.
    """
    return check_ratio_budget(budget.name, num, den, budget.max_ratio, paired=paired, seed=seed)


def measure_latency(
    budget: LatencyBudget,
    run_num: Any,
    run_den: Any,
    *,
    plan: BlockPlan = BlockPlan.BUDGETS,
) -> tuple[BudgetResult, np.ndarray, np.ndarray]:
    """Time both zero-argument callables in alternated blocks (each at its steady state, drift
    hitting both alike), pair the block medians, then judge.

    Returns the result and the numerator's and denominator's block medians (seconds).
    """
    num, den = plan.steady_state([run_num, run_den])
    num_m, den_m = block_medians(num, plan.blocks), block_medians(den, plan.blocks)
    return check_latency(budget, num_m, den_m, paired=True), num_m, den_m


def latency_message(result: BudgetResult) -> str:
    """One line for a failed (or passed) latency budget: the budget's name, ratio, CI and verdict."""
    return f"latency budget {result.name!r}: {result.reason}"


@dataclass(frozen=True)
class AbsoluteResult:
    name: str
    median_ms: float
    ci_low_ms: float
    ci_high_ms: float
    max_ms: float
    passed: bool
    reason: str


def check_absolute(
    budget: AbsoluteBudget, samples_s: Sequence[float] | np.ndarray, *, seed: int = 0
) -> AbsoluteResult:
    """Median ms <= max_ms, failing only when the median's whole 95% CI is above it too."""
    median, low, high = (v * 1e3 for v in median_ci(samples_s, seed=seed))
    ci = f"95% CI [{low:.3f}, {high:.3f}] ms"
    if median <= budget.max_ms:
        passed, verdict = True, f"<= budget {budget.max_ms:g} ms"
    elif low <= budget.max_ms:
        passed, verdict = True, f"> budget {budget.max_ms:g} ms but the CI reaches it: not conclusive"
    else:
        passed, verdict = False, f"> budget {budget.max_ms:g} ms and the whole CI is above it"
    reason = f"{budget.name}: median {median:.3f} ms {verdict} ({ci})"
    return AbsoluteResult(budget.name, median, low, high, budget.max_ms, passed, reason)


# -------------------------------------------------------------------------------------------------
# TOML snippets for scripts/measure_budgets.py (written by tomli-w, read back by tomllib)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def budget_max_ratio(measured_ratio: float, headroom: float = MAX_HEADROOM) -> float:
    """``measured_ratio x headroom`` rounded DOWN to 0.005, so the budget never exceeds the headroom."""
    if not 1 <= headroom <= MAX_HEADROOM:
        raise ValueError(f"headroom must be in [1, {MAX_HEADROOM}], got {headroom}")
    return math.floor(measured_ratio * headroom / 0.005 + 1e-9) * 0.005


def latency_toml(
    budget: LatencyBudget,
    result: BudgetResult,
    *,
    max_ratio: float,
    measured: Mapping[str, Any],
    machine: str,
    record: str | None = None,
) -> str:
    """A ``[latency."name"]`` table with this machine's bound in ``by_machine`` and the measured ratio
    and CI under ``measured."<record>"`` (default the machine id; ``<id>-torch<version>`` keeps one
    record per torch env). Other machines' bounds and records are kept; a machine's bound never
    tightens below an earlier record's (another torch env measured there), and the general
    ``max_ratio`` stays no tighter than any machine's."""
    entry: dict[str, Any] = {"numerator": budget.numerator, "denominator": budget.denominator}
    if budget.batch != 1:
        entry["batch"] = budget.batch
    if budget.cpu_flags_any:
        entry["cpu_flags_any"] = list(budget.cpu_flags_any)
    mine = max(round(max_ratio, 4), budget.by_machine.get(machine, 0.0))
    by_machine = {**budget.by_machine, machine: mine}
    entry["max_ratio"] = max(budget.max_ratio, *by_machine.values())
    entry["by_machine"] = by_machine
    key = record or machine
    info = _rounded({"ratio": result.ratio, "ci95": [result.ci_low, result.ci_high], **measured})
    entry["measured"] = {**(budget.measured or {}), key: info}
    return tomli_w.dumps({"latency": {budget.name: entry}})


def size_toml(
    budget: SizeBudget, result: SizeResult, *, max_ratio: float, measured: Mapping[str, Any]
) -> str:
    info = {
        "ratio": result.ratio,
        "bytes": result.size_bytes,
        "reference_bytes": result.reference_bytes,
        **measured,
    }
    entry = {"relative_to": budget.relative_to, "max_ratio": round(max_ratio, 4), "measured": _rounded(info)}
    return tomli_w.dumps({"size": {budget.artifact: entry}})


def absolute_toml(
    machine: str, medians_ms: Mapping[str, float], *, threads: int, batch: int = 1, headroom: float = 1.5
) -> str:
    """An ``[absolute."<machine>"]`` table: ``headroom`` x each measured median (kept under ``measured``)."""
    entry: dict[str, Any] = {"threads": threads}
    if batch != 1:
        entry["batch"] = batch
    entry.update({backend: round(ms * headroom, 2) for backend, ms in medians_ms.items()})
    entry["measured"] = {f"{backend}_median_ms": round(ms, 3) for backend, ms in medians_ms.items()}
    return tomli_w.dumps({"absolute": {machine: entry}})
