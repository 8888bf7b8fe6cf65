"""Size and latency budgets (fixtures/budgets.toml) hold for the baseline's artifacts; the checks can fail."""

from __future__ import annotations

import json
import threading
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from detbench._fs import locked
from detbench.history.benchjson import has_raw_data
from detbench.history.file import save_run
from detbench.history.recorder import RunRecorder
from detbench.perf import machine
from detbench.perf.budgets import (
    MAX_HEADROOM,
    AbsoluteBudget,
    BudgetError,
    LatencyBudget,
    SizeBudget,
    absolute_toml,
    check_absolute,
    check_latency,
    check_size,
    latency_message,
    latency_toml,
    load_budgets,
    loads,
    measure_latency,
    parse_budgets,
)
from detbench.perf.timing import BlockPlan, Slowed, alone
from detbench.runtimes.backends import REGISTRY, BaseBackend
from detbench.runtimes.cache import artifact_size
from detbench.runtimes.preprocess import preprocess

# Per absolute budget: 4 blocks' worth of calls, 5 dropped each (80 kept calls a backend). Latency
# ratio budgets use the budgets module's own defaults, the plan they were measured with.
BLOCKS, BLOCK_CALLS, DISCARD = 4, 25, 5
MS = 1e-3

BUDGETS = load_budgets()
MACHINE = machine.machine_id()
BACKEND_OF_FORMAT = {REGISTRY[n].artifact_format: n for n in REGISTRY}


def _marks(*names: str) -> list:
    return [pytest.mark.openvino] if any("openvino" in n for n in names) else []


def lognormal(median_ms: float, n: int = 30, seed: int = 0, sigma: float = 0.05) -> np.ndarray:
    return median_ms * MS * np.random.default_rng(seed).lognormal(0.0, sigma, n)


@pytest.fixture(scope="module")
def load_backend(workbench):
    """``load_backend(name)``: each backend loaded once for this module."""
    cache: dict[str, BaseBackend] = {}

    def load(name: str) -> BaseBackend:
        if name not in cache:
            cache[name] = workbench.load(name)
        return cache[name]

    return load


@pytest.fixture(scope="module")
def val_batch(dataset, model_info):
    return lambda batch: preprocess(dataset.images("val")[:batch], model_info.imgsz)[0]


# -- the committed budgets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "budget", [pytest.param(b, id=b.artifact, marks=_marks(b.artifact, b.relative_to)) for b in BUDGETS.size]
)
def test_size_budget(budget: SizeBudget, workbench, baseline: Path) -> None:
    """Each artifact is no bigger than its budget times the checkpoint (or another artifact)."""

    def size_of(what: str) -> int:
        return artifact_size(
            baseline if what == "checkpoint" else workbench.artifact(BACKEND_OF_FORMAT[what])
        )

    result = check_size(budget, size_of(budget.artifact), size_of(budget.relative_to))
    assert result.passed, result.reason


@pytest.mark.timing
@pytest.mark.parametrize(
    "budget",
    [
        pytest.param(b, id=b.name, marks=_marks(b.numerator, b.denominator))
        for b in BUDGETS.latency_for(MACHINE)
    ],
)
def test_latency_budget(budget: LatencyBudget, load_backend, val_batch) -> None:
    """The steady-state latency ratio (alternated blocks, paired) is within budget (or its CI reaches it)."""
    if not budget.applies_to(set(machine.cpu_flags())):
        pytest.skip(f"{budget.name} applies only on CPUs with one of {', '.join(budget.cpu_flags_any)}")
    num, den = load_backend(budget.numerator), load_backend(budget.denominator)
    x = val_batch(budget.batch)
    result, _, _ = measure_latency(budget, lambda: num.run(x), lambda: den.run(x))
    assert result.passed, latency_message(result)


_ABSOLUTE = BUDGETS.absolute_for(MACHINE)


@pytest.mark.timing
@pytest.mark.parametrize(
    "budget",
    [pytest.param(b, id=b.backend, marks=_marks(b.backend)) for b in _ABSOLUTE]
    or [
        pytest.param(
            None,
            id="none",
            marks=pytest.mark.skip(
                reason=f'no [absolute."{MACHINE}"] table in budgets.toml for this machine'
            ),
        )
    ],
)
def test_absolute_budget_of_this_machine(
    budget: AbsoluteBudget, load_backend, val_batch, pytestconfig
) -> None:
    """This machine's absolute milliseconds hold, at the threads its table was written for."""
    threads = pytestconfig.getoption("--detbench-threads")
    if budget.threads != threads:
        pytest.skip(f"the table is for {budget.threads} thread(s); this run uses {threads}")
    backend, x = load_backend(budget.backend), val_batch(budget.batch)
    samples = alone(lambda: backend.run(x), blocks=BLOCKS, block_calls=BLOCK_CALLS, discard=DISCARD)
    result = check_absolute(budget, samples)
    assert result.passed, result.reason


# -- the checks themselves -----------------------------------------------------------------------------


class TestLatencyCheck:
    BUDGET = LatencyBudget("onnxruntime/pytorch", "onnxruntime", "pytorch", max_ratio=1.2)

    def test_clear_miss_fails_naming_budget_ratio_and_ci(self) -> None:
        """A ratio of ~2 against a 1.2 budget fails; the message names the budget, the ratio and its CI."""
        result = check_latency(self.BUDGET, lognormal(20, seed=1), lognormal(10, seed=2))
        message = latency_message(result)
        assert not result.passed
        assert 1.8 < result.ratio < 2.2
        assert result.ci_low > 1.2
        assert "'onnxruntime/pytorch'" in message
        assert "budget 1.2" in message
        assert f"{result.ratio:.3f}" in message
        assert f"[{result.ci_low:.3f}, {result.ci_high:.3f}]" in message

    def test_median_over_budget_within_noise_passes_as_inconclusive(self) -> None:
        """A median a little over budget whose CI reaches it is not a failure, and says so."""
        spread = np.array([8, 9, 10, 11, 12.5, 14, 15, 16, 17]) * MS  # median 12.5 ms, wide
        result = check_latency(self.BUDGET, spread, np.full(9, 10 * MS))
        assert result.ratio > 1.2
        assert result.ci_low <= 1.2
        assert result.passed
        assert "not conclusive" in result.reason

    def test_within_budget_passes(self) -> None:
        """Equal medians pass a 1.2 budget."""
        assert check_latency(self.BUDGET, lognormal(10, seed=5), lognormal(10, seed=6)).passed

    def test_real_measurement_of_a_slowed_callable_fails(self) -> None:
        """In alternated blocks, a callable made 3x slower fails a 1.2 budget against its original."""
        data = np.random.default_rng(0).random(5_000)

        def work() -> None:
            np.sort(data)

        result, num, den = measure_latency(self.BUDGET, Slowed(work, 2.0), work, plan=BlockPlan(8, 10, 2))
        assert num.size == den.size == 8  # block medians, paired
        assert not result.passed, latency_message(result)
        assert "paired ratio" in result.reason


class TestSizeCheck:
    def test_oversized_artifact_fails_with_ratio(self) -> None:
        """3x the checkpoint against a 2.2 budget fails and the reason gives both sizes and the ratio."""
        result = check_size(SizeBudget("onnx", "checkpoint", 2.2), 3_000_000, 1_000_000)
        assert not result.passed
        assert result.ratio == pytest.approx(3.0)
        assert "3.000 x checkpoint" in result.reason
        assert "budget 2.2" in result.reason

    def test_size_at_budget_passes(self) -> None:
        """A ratio equal to the budget passes (the budget is inclusive)."""
        assert check_size(SizeBudget("onnx-int8", "onnx", 0.5), 500, 1000).passed

    def test_directory_size_sums_its_files(self, tmp_path: Path) -> None:
        """An OpenVINO IR folder counts its .xml and .bin together."""
        (tmp_path / "model.xml").write_bytes(b"x" * 10)
        (tmp_path / "model.bin").write_bytes(b"y" * 32)
        assert artifact_size(tmp_path) == 42


class TestAbsoluteBudgets:
    def doc(self, other_ms: float = 1.0, own_ms: float = 50.0) -> dict:
        return {
            "absolute": {
                "ffffffffffff": {"onnxruntime": other_ms},
                MACHINE: {"threads": 1, "onnxruntime": own_ms, "pytorch": own_ms},
            }
        }

    def test_another_machines_budget_is_not_applied(self) -> None:
        """Only this machine's table is selected; another id's (impossibly tight) budget is left out."""
        selected = parse_budgets(self.doc()).absolute_for(MACHINE)
        assert {b.backend for b in selected} == {"onnxruntime", "pytorch"}
        assert all(b.machine == MACHINE and b.max_ms == 50.0 for b in selected)

    def test_this_machines_budget_is_applied_and_can_fail(self) -> None:
        """This machine's budget judges measurements: 20 ms passes 50 ms, and fails 10 ms."""
        budget = parse_budgets(self.doc()).absolute_for(MACHINE)[0]
        assert check_absolute(budget, lognormal(20)).passed
        tight = parse_budgets(self.doc(own_ms=10.0)).absolute_for(MACHINE)[0]
        result = check_absolute(tight, lognormal(20))
        assert not result.passed
        assert "> budget 10 ms" in result.reason
        assert f"median {result.median_ms:.3f} ms" in result.reason

    def test_machine_id_override_selects_that_table(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """DETBENCH_MACHINE_ID names the table to apply, for owners of a runner class."""
        monkeypatch.setenv(machine.MACHINE_ID_ENV, "ffffffffffff")
        selected = parse_budgets(self.doc()).absolute_for(machine.machine_id())
        assert [(b.backend, b.max_ms) for b in selected] == [("onnxruntime", 1.0)]

    def test_printed_table_round_trips(self) -> None:
        """The [absolute] table measure_budgets.py prints loads back with headroom applied."""
        text = absolute_toml(MACHINE, {"onnxruntime": 4.0, "onnxruntime-int8": 2.0}, threads=2)
        assert "True" not in text and tomllib.loads(text)["absolute"][MACHINE]["measured"]
        budgets = loads(text).absolute_for(MACHINE)
        assert {(b.backend, b.max_ms, b.threads) for b in budgets} == {
            ("onnxruntime", 6.0, 2),
            ("onnxruntime-int8", 3.0, 2),
        }


class TestBudgetFile:
    def test_committed_file_covers_every_export_and_records_provenance(self) -> None:
        """Every export format has a size budget, and each latency ratio names two backends."""
        assert {b.artifact for b in BUDGETS.size} >= {"torchscript", "onnx", "onnx-int8"}
        assert BUDGETS.latency
        assert all(b.numerator in REGISTRY and b.denominator in REGISTRY for b in BUDGETS.latency)

    def test_committed_latency_budgets_bind(self) -> None:
        """On each machine with its own bound, the bound is at most 10 % above the highest ratio measured
        there (records ``<id>`` and ``<id>-<suffix>``: one per torch env), so a 15 % slip fails; the
        general bound, for machines not measured, is no tighter than any of theirs."""
        for b in BUDGETS.latency:
            assert b.measured is not None, b.name
            for machine_id, bound in b.by_machine.items():
                ratios = [m["ratio"] for k, m in b.measured.items() if k.split("-")[0] == machine_id]
                assert ratios and bound <= max(ratios) * MAX_HEADROOM + 1e-9, (b.name, machine_id)
            assert b.max_ratio >= max(b.by_machine.values(), default=0), b.name

    @pytest.mark.parametrize(
        ("doc", "match"),
        [
            ({"speed": {}}, "unknown key.*speed"),
            ({"size": {"onnx": {"relative_to": "checkpoint", "max_ratio": -1}}}, r"\[size.onnx\] max_ratio"),
            ({"size": {"onnx": {"relative_to": "onnx", "max_ratio": 1}}}, "different artifact"),
            ({"size": {"tflite": {"relative_to": "onnx", "max_ratio": 1}}}, "artifact is 'tflite'"),
            (
                {"latency": {"x": {"numerator": "tensorrt", "denominator": "pytorch", "max_ratio": 1}}},
                r'\[latency."x"\] numerator',
            ),
            ({"latency": {"x": {"numerator": "pytorch", "denominator": "pytorch", "max_ratio": 1}}}, "both"),
            (
                {"latency": {"x": {"numerator": "onnxruntime", "denominator": "pytorch", "max_ratio": True}}},
                "positive number",
            ),
            (
                {
                    "latency": {
                        "x": {
                            "numerator": "onnxruntime",
                            "denominator": "pytorch",
                            "max_ratio": 1,
                            "rounds": 5,
                        }
                    }
                },
                "unknown key.*rounds",
            ),
            ({"absolute": {"abc": {"onnxruntime": "fast"}}}, r'\[absolute."abc"\] onnxruntime'),
            ({"absolute": {"abc": {"threads": 0, "onnxruntime": 3.0}}}, "threads"),
        ],
        ids=[
            "section",
            "negative",
            "self-relative",
            "format",
            "backend",
            "same",
            "bool",
            "key",
            "ms",
            "threads",
        ],
    )
    def test_malformed_entry_names_file_and_entry(self, doc: dict, match: str) -> None:
        """Each malformed entry raises BudgetError naming the file and the entry."""
        with pytest.raises(BudgetError, match=match) as info:
            parse_budgets(doc, "fixtures/budgets.toml")
        assert str(info.value).startswith("fixtures/budgets.toml: ")

    def test_invalid_toml_and_missing_file_name_the_path(self, tmp_path: Path) -> None:
        """A syntax error and a missing file are BudgetErrors that start with the path."""
        bad = tmp_path / "budgets.toml"
        bad.write_text("[size.onnx\nmax_ratio = 2\n")
        with pytest.raises(BudgetError, match=f"^{bad}: not valid TOML"):
            load_budgets(bad)
        with pytest.raises(BudgetError, match="not found"):
            load_budgets(tmp_path / "absent.toml")

    def test_printed_latency_entry_round_trips(self) -> None:
        """A latency table printed by measure_budgets.py parses back with its measured ratio and CI."""
        budget = LatencyBudget("onnxruntime-int8/onnxruntime", "onnxruntime-int8", "onnxruntime", 1.0)
        result = check_latency(budget, lognormal(4, seed=7), lognormal(8, seed=8))
        budget = LatencyBudget(budget.name, budget.numerator, budget.denominator, 1.0, cpu_flags_any=("avx",))
        text = latency_toml(
            budget, result, max_ratio=0.65, measured={"blocks": 30, "command": 'say "hi"'}, machine="m1"
        )
        (back,) = loads(text).latency
        assert back.cpu_flags_any == ("avx",)
        assert (back.numerator, back.denominator) == ("onnxruntime-int8", "onnxruntime")
        assert (back.on("m1").max_ratio, back.max_ratio) == (0.65, 1.0)
        assert back.measured["m1"]["ratio"] == pytest.approx(result.ratio, abs=1e-3)
        assert back.measured["m1"]["ci95"][1] == pytest.approx(result.ci_high, abs=1e-3)
        assert back.measured["m1"]["command"] == 'say "hi"'
        # A second machine keeps the first's bound; a second torch env on m1 cannot tighten m1's bound;
        # the general bound grows to cover every machine's.
        again = latency_toml(back, result, max_ratio=1.2, measured={"blocks": 30}, machine="m2")
        (both,) = loads(again).latency
        assert dict(both.by_machine) == {"m1": 0.65, "m2": 1.2} and both.max_ratio == 1.2
        env = latency_toml(both, result, max_ratio=0.6, measured={}, machine="m1", record="m1-torch213")
        (three,) = loads(env).latency
        assert three.on("m1").max_ratio == 0.65
        assert set(three.measured) == {"m1", "m2", "m1-torch213"}

    def test_a_measured_machine_gets_its_own_bound(self) -> None:
        """``latency_for`` applies a listed machine's bound there and the general bound elsewhere."""
        doc = {
            "latency": {
                "o/p": {
                    "numerator": "onnxruntime",
                    "denominator": "pytorch",
                    "max_ratio": 0.5,
                    "by_machine": {"fast": 0.3},
                }
            }
        }
        budgets = parse_budgets(doc)
        assert budgets.latency_for("fast")[0].max_ratio == 0.3
        assert budgets.latency_for("unmeasured")[0].max_ratio == 0.5
        bad = {"latency": {"o/p": {**doc["latency"]["o/p"], "by_machine": {"fast": 0}}}}
        with pytest.raises(BudgetError, match=r"by_machine\.fast"):
            parse_budgets(bad)


# -- machine id and the history of timed runs ----------------------------------------------------------

X86 = {"model name": "Intel(R) Xeon(R) Platinum 8480+", "flags": "fpu sse4_2 avx avx2 fma avx512f amx_tile"}


class TestMachine:
    def test_machine_id_is_stable_and_hardware_sensitive(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Same CPU fields give the same id; another ISA flag gives another id."""
        monkeypatch.delenv(machine.MACHINE_ID_ENV, raising=False)
        assert machine.machine_id(X86) == machine.machine_id(dict(X86))
        assert len(machine.machine_id(X86)) == machine.MACHINE_ID_LEN
        assert machine.machine_id(X86) != machine.machine_id({**X86, "flags": X86["flags"] + " avx512_vnni"})

    def test_cpu_fields_are_read_for_x86_and_arm(self) -> None:
        """x86 "flags" and Arm "Features" both yield the inference-relevant ISA flags."""
        assert machine.cpu_model(X86) == "Intel(R) Xeon(R) Platinum 8480+"
        assert machine.cpu_flags(X86) == ["sse4_2", "avx", "avx2", "fma", "avx512f", "amx_tile"]
        arm = machine._cpuinfo_fields("processor\t: 0\nFeatures\t: fp asimd asimddp sve\nCPU part\t: 0xd0c\n")
        assert machine.cpu_flags(arm) == ["asimd", "asimddp", "sve"]
        assert machine.cpu_model(arm) != "0"

    def test_machine_info_has_cpu_versions_and_threads(self) -> None:
        """What the benchmark hook adds to pytest-benchmark's machine_info."""
        info = machine.machine_info(threads=3)
        assert info["threads"] == 3
        assert info["detbench_machine_id"] == MACHINE
        assert {"torch", "onnxruntime", "openvino", "ultralytics"} <= set(info["versions"])
        assert info["cpu_model"]
        assert isinstance(info["cpu_flags"], list)


RUN = {"machine_info": {}, "benchmarks": [{"name": "b", "stats": {"data": [0.001, 0.002]}}]}
RUN_NO_DATA = {"machine_info": {}, "benchmarks": [{"name": "b", "stats": {"median": 0.001}}]}


class TestHistory:
    NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    def test_run_is_saved_under_timestamp_and_machine(self, tmp_path: Path) -> None:
        """The file is <UTC stamp>_<machine>.json holding the run; no temp file is left behind."""
        path = save_run(RUN, directory=tmp_path, machine="abc123", now=self.NOW)
        assert path == tmp_path / "20250102T030405Z_abc123.json"
        assert has_raw_data(json.loads(path.read_text()))
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]

    def test_same_second_runs_do_not_overwrite(self, tmp_path: Path) -> None:
        """A second run in the same second gets a -2 suffix."""
        first = save_run(RUN, directory=tmp_path, machine="m", now=self.NOW)
        second = save_run(RUN_NO_DATA, directory=tmp_path, machine="m", now=self.NOW)
        assert second.name == "20250102T030405Z_m-2.json"
        assert first.read_text() != second.read_text()

    def test_save_waits_for_the_directory_lock(self, tmp_path: Path) -> None:
        """While another holder has the history lock, a save blocks instead of racing it."""
        held, release_after = threading.Event(), 0.3

        def hold() -> None:
            with locked(tmp_path):
                held.set()
                time.sleep(release_after)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(5)
        start = time.perf_counter()
        save_run(RUN, directory=tmp_path, machine="m", now=self.NOW)
        holder.join()
        assert time.perf_counter() - start >= release_after * 0.8

    def test_recorder_writes_nothing_when_timing_is_disabled(self, tmp_path: Path) -> None:
        """--benchmark-disable runs leave no history."""
        assert RunRecorder(None, local=tmp_path).record(RUN, enabled=False) is None
        assert list(tmp_path.iterdir()) == []

    def test_recorder_keeps_one_file_preferring_raw_timings(self, tmp_path: Path) -> None:
        """JSON then autosave: one file per session, replaced only by a run that adds raw timings."""
        recorder = RunRecorder(None, local=tmp_path)
        first = recorder.record(RUN_NO_DATA, enabled=True)
        assert recorder.record(RUN, enabled=True) == first
        assert has_raw_data(json.loads(first.read_text()))
        assert recorder.record(RUN_NO_DATA, enabled=True) == first
        assert has_raw_data(json.loads(first.read_text()))
        assert [p for p in tmp_path.iterdir() if p.suffix == ".json"] == [first]


def test_cpu_flag_condition_selects_where_a_budget_applies() -> None:
    """A budget tied to int8 dot-product flags applies with VNNI and is skipped without it."""
    text = '[latency."a/b"]\nnumerator = "onnxruntime-int8"\ndenominator = "onnxruntime"\nmax_ratio = 0.9\n'
    text += 'cpu_flags_any = ["avx512_vnni", "avx_vnni"]\n'
    budget = loads(text, Path("b.toml")).latency[0]
    assert budget.applies_to({"avx2", "avx512_vnni"})
    assert not budget.applies_to({"avx2", "fma"})
    unconditional = loads(text.replace('cpu_flags_any = ["avx512_vnni", "avx_vnni"]\n', ""), Path("b.toml"))
    assert unconditional.latency[0].applies_to(set())
