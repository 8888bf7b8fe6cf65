"""Measure every budget in fixtures/budgets.toml on this machine and print TOML to paste back.

    python scripts/measure_budgets.py                      # 40 alternated blocks, 10 timed calls each
    python scripts/measure_budgets.py --blocks 80 --threads 1 --weights path/to/best.pt

Run it on a quiet machine (no training, no browser): the ratios cancel machine speed, not noise.
Prints, for each latency entry, this machine's bound in ``by_machine`` = the measured typical block
ratio x --headroom (at most 1.10, rounded down: a budget that binds), the other machines' bounds
kept and the general ``max_ratio`` no tighter, and ``measured."<machine id>-torch<version>"``
(ratio, paired 95% CI, blocks, threads, date, this command), all written with tomli-w, and an
``[absolute."<machine id>"]`` table. Run it in each torch env (`.tox/<env>/bin/python ...`): the
bound of a machine covers both. Review the suggestions before committing: a budget is a promise
about the deployment, not the last run.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

from detbench.data.datasets import load_dataset
from detbench.model.baseline import resolve_weights, synthetic_dataset
from detbench.model.checkpoint import load_detection_model
from detbench.paths import configure_environment
from detbench.perf.budgets import (
    BUDGETS_FILE,
    absolute_toml,
    budget_max_ratio,
    check_size,
    latency_toml,
    load_budgets,
    measure_latency,
    size_toml,
)
from detbench.perf.machine import cpu_flags, cpu_model, machine_id, machine_info
from detbench.perf.timing import BlockPlan
from detbench.runtimes.backends import REGISTRY, BaseBackend
from detbench.runtimes.cache import artifact_size
from detbench.runtimes.export import openvino_available
from detbench.runtimes.preprocess import preprocess
from detbench.runtimes.workbench import Workbench


def _round_up(value: float, step: float = 0.05) -> float:
    return round(math.ceil(value / step - 1e-9) * step, 4)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, help="checkpoint (default: the committed baseline)")
    ap.add_argument("--budgets", type=Path, default=BUDGETS_FILE)
    preset = BlockPlan.BUDGETS_RECORD
    ap.add_argument("--blocks", type=int, default=preset.blocks, help="alternated blocks per latency ratio")
    ap.add_argument("--block-calls", type=int, default=preset.block_calls, help="consecutive calls per block")
    ap.add_argument("--discard", type=int, default=preset.discard, help="calls dropped at each block's start")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--headroom",
        type=float,
        default=1.10,
        help="latency max_ratio = measured ratio x this, at most 1.10 (sizes use 1.1, absolute 1.5)",
    )
    args = ap.parse_args(argv)
    plan = BlockPlan(args.blocks, args.block_calls, args.discard)
    command = "python scripts/measure_budgets.py " + shlex.join(argv if argv is not None else sys.argv[1:])

    budgets = load_budgets(args.budgets)
    weights = resolve_weights(args.weights)
    info = load_detection_model(weights)[1]
    dataset = load_dataset(synthetic_dataset())
    bench = Workbench.from_options(weights, threads=args.threads)
    machine = machine_id()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    common = {"machine": machine, "date": stamp, "command": command.strip()}
    # One record per machine and torch env: the INT8 and TorchScript artifacts are each env's own export.
    record = f"{machine}-torch{version('torch').split('+')[0]}"

    print(
        f"# Measured on {cpu_model()} ({machine_info(args.threads)['logical_cpus']} "
        f"logical CPUs, flags {' '.join(cpu_flags())}), machine id {machine}, {args.threads} "
        f"thread(s), weights {weights.name} at {info.imgsz} px.\n"
    )

    backend_of = {REGISTRY[n].artifact_format: n for n in REGISTRY}

    def size_of(what: str) -> int:
        return artifact_size(weights if what == "checkpoint" else bench.artifact(backend_of[what]))

    for budget in budgets.size:
        if "openvino" in (budget.artifact, budget.relative_to) and not openvino_available():
            print(f"# {budget.name}: skipped (openvino is not installed)\n")
            continue
        result = check_size(budget, size_of(budget.artifact), size_of(budget.relative_to))
        print(size_toml(budget, result, max_ratio=_round_up(result.ratio * 1.1), measured=common))

    loaded: dict[str, BaseBackend] = {}
    medians: dict[str, list[float]] = {}
    for budget in budgets.latency:
        names = (budget.numerator, budget.denominator)
        if "openvino" in names and not openvino_available():
            print(f"# {budget.name}: skipped (openvino is not installed)\n")
            continue
        for name in names:
            if name not in loaded:
                loaded[name] = bench.load(name)
        x = preprocess(dataset.images("val")[: budget.batch], info.imgsz)[0]
        num_b, den_b = loaded[budget.numerator], loaded[budget.denominator]
        result, num, den = measure_latency(
            budget,
            lambda b=num_b, x=x: b.run(x),
            lambda b=den_b, x=x: b.run(x),
            plan=plan,
        )
        if budget.batch == 1:
            medians.setdefault(budget.numerator, []).append(float(np.median(num)) * 1e3)
            medians.setdefault(budget.denominator, []).append(float(np.median(den)) * 1e3)
        measured = {"blocks": plan.blocks, "block_calls": plan.block_calls, "threads": args.threads, **common}
        max_ratio = budget_max_ratio(result.ratio, args.headroom)
        print(
            latency_toml(
                budget, result, max_ratio=max_ratio, measured=measured, machine=machine, record=record
            )
        )

    if medians:
        print("# Optional: this machine's absolute budgets (1.5 x the measured median, batch 1).")
        print(
            absolute_toml(machine, {k: float(np.median(v)) for k, v in medians.items()}, threads=args.threads)
        )
    return 0


if __name__ == "__main__":
    configure_environment()
    raise SystemExit(main())
