"""Calibrate the in-run latency gate (``detbench ab``, ``gate.ab``) on the real ONNX Runtime backend.

    python scripts/calibrate_gate.py artifacts --out calib.json   # build + measure the slowed ONNX files
    python scripts/calibrate_gate.py aa --out calib.json --runs 40   # fresh A/A runs
    python scripts/calibrate_gate.py slow --out calib.json --runs 20 # fresh runs per slowed artifact
    python scripts/calibrate_gate.py table --out calib.json          # print the table

Every run is independent: two fresh ONNX Runtime sessions (A = the baseline ONNX, B = a second copy
of it for A/A, or a slowed artifact), then ``gate.ab`` with its defaults (alternated blocks, per-block
medians paired, Wilcoxon + paired BCa). The slowed artifacts are the baseline ONNX plus a chain of
input-dependent MatMuls (``detbench.verify.perturb.add_input_compute``); each one's slowdown is
measured in a long alternated run of its own and printed next to its detection rate. The parts are
separate commands so each fits a short locked slot; results accumulate in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from detbench.data.synth import make_scene
from detbench.model.baseline import resolve_weights
from detbench.model.checkpoint import load_detection_model
from detbench.paths import configure_environment
from detbench.perf import gate
from detbench.perf.stats import GATE_ALPHA, PAIRED_MIN_EFFECT, paired_ratio_ci
from detbench.perf.timing import BlockPlan, block_medians
from detbench.runtimes.backends import BackendSettings, create
from detbench.runtimes.preprocess import preprocess
from detbench.runtimes.workbench import Workbench
from detbench.verify.perturb import add_input_compute

TARGETS = (0.05, 0.10, 0.20)
PROBE_MATMULS = 16
WIDTH = 64  # rows of 64: finer steps of cost than the input's 128-wide rows


def _session(path: Path, threads: int):
    backend = create("onnxruntime", BackendSettings(threads=threads))
    backend.load(path)
    return backend


def _input(imgsz: int) -> np.ndarray:
    image, _ = make_scene(0, "val", 0, imgsz)
    return preprocess([image], imgsz)[0]


def _slowdown(base: Path, cand: Path, x: np.ndarray, threads: int) -> tuple[float, float, float]:
    a, b = _session(base, threads), _session(cand, threads)
    plan = BlockPlan.GATE_REFERENCE
    ta, tb = plan.steady_state([lambda: a.run(x), lambda: b.run(x)])
    r, lo, hi = paired_ratio_ci(block_medians(ta, plan.blocks), block_medians(tb, plan.blocks))
    return r - 1, lo - 1, hi - 1


def _load(out: Path) -> dict:
    return json.loads(out.read_text()) if out.exists() else {}


def _save(out: Path, doc: dict) -> None:
    out.write_text(json.dumps(doc, indent=1))


def part_artifacts(args: argparse.Namespace, doc: dict) -> None:
    weights = resolve_weights(None)
    info = load_detection_model(weights)[1]
    bench = Workbench.from_options(weights, threads=1)
    baseline = Path(bench.artifact("onnxruntime"))
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    x = _input(info.imgsz)
    aa = work / "aa.onnx"
    shutil.copyfile(baseline, aa)
    probe = add_input_compute(baseline, work / "probe.onnx", matmuls=PROBE_MATMULS, width=WIDTH)
    per_mm = _slowdown(baseline, probe, x, args.threads)[0] / PROBE_MATMULS
    print(f"probe: {PROBE_MATMULS} MatMuls cost {per_mm * PROBE_MATMULS:+.2%} ({per_mm:+.2%} each)")
    arts = {}
    for t in TARGETS:
        k = max(1, round(t / per_mm))
        path = add_input_compute(baseline, work / f"slow{round(t * 100)}.onnx", matmuls=k, width=WIDTH)
        s, lo, hi = _slowdown(baseline, path, x, args.threads)
        arts[f"{t:.2f}"] = {"path": str(path), "matmuls": k, "slowdown": s, "ci95": [lo, hi]}
        print(f"target {t:.0%}: {k} MatMuls, measured slowdown {s:+.2%} (95% CI {lo:+.2%}..{hi:+.2%})")
    doc.update(baseline=str(baseline), aa=str(aa), imgsz=info.imgsz, artifacts=arts, per_matmul=per_mm)


def part_remeasure(args: argparse.Namespace, doc: dict) -> None:
    """Re-measure the slowdown of the artifacts already built (after a change of the timing core)."""
    x = _input(doc["imgsz"])
    for key, art in doc["artifacts"].items():
        s, lo, hi = _slowdown(Path(doc["baseline"]), Path(art["path"]), x, args.threads)
        art.update(slowdown=s, ci95=[lo, hi], runs=[])
        print(
            f"target {float(key):.0%}: {art['matmuls']} MatMuls, "
            f"measured slowdown {s:+.2%} ({lo:+.2%}..{hi:+.2%})"
        )
    doc["aa_runs"] = []


def _runs(doc: dict, cand: str, n: int, threads: int) -> list[dict]:
    x = _input(doc["imgsz"])
    out = []
    for i in range(n):
        a, b = _session(Path(doc["baseline"]), threads), _session(Path(cand), threads)
        v = gate.ab(lambda a=a: a.run(x), lambda b=b: b.run(x), name=f"run{i}", seed=i)
        out.append({"change": v.change, "ci": [v.ci_low, v.ci_high], "p": v.p_value, "status": v.status})
    return out


def part_aa(args: argparse.Namespace, doc: dict) -> None:
    t0 = time.perf_counter()
    doc.setdefault("aa_runs", []).extend(_runs(doc, doc["aa"], args.runs, args.threads))
    print(f"A/A: {args.runs} runs in {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.2f}")


def part_slow(args: argparse.Namespace, doc: dict) -> None:
    for key, art in doc["artifacts"].items():
        if args.only and key not in args.only:
            continue
        t0 = time.perf_counter()
        art.setdefault("runs", []).extend(_runs(doc, art["path"], args.runs, args.threads))
        print(f"slow {key}: {args.runs} runs in {time.perf_counter() - t0:.0f} s")


def _flagged(runs: list[dict], min_effect: float, alpha: float) -> int:
    return sum(r["p"] < alpha and r["change"] >= min_effect for r in runs)


def table(doc: dict, min_effects: tuple[float, ...]) -> str:
    plan = BlockPlan.GATE
    lines = [
        f"gate.ab defaults: {plan.blocks} blocks per arm, each {plan.discard} untimed calls (>= "
        f"{plan.settle_s} s) then {plan.kept_per_block} timed; alpha {GATE_ALPHA}; regression = "
        "one-sided Wilcoxon p < alpha and paired change >= min effect",
        f"{'artifact':<34} {'measured slowdown':>22} {'runs':>5}  "
        + "  ".join(f"flagged@{m:.0%}" for m in min_effects),
    ]
    aa = doc.get("aa_runs", [])
    if aa:
        changes = np.array([r["change"] for r in aa])
        lines.append(
            f"{'A/A (baseline vs its copy)':<34} {'(sd of change ' + format(changes.std(), '.2%') + ')':>22} "
            f"{len(aa):>5}  "
            + "  ".join(f"{_flagged(aa, m, GATE_ALPHA):>4}/{len(aa):<6}" for m in min_effects)
        )
    for key, art in doc.get("artifacts", {}).items():
        runs = art.get("runs", [])
        if not runs:
            continue
        lo, hi = art["ci95"]
        meas = f"{art['slowdown']:+.1%} [{lo:+.1%},{hi:+.1%}]"
        lines.append(
            f"{'+' + str(art['matmuls']) + ' MatMuls (target ' + format(float(key), '.0%') + ')':<34} "
            f"{meas:>22} {len(runs):>5}  "
            + "  ".join(f"{_flagged(runs, m, GATE_ALPHA):>4}/{len(runs):<6}" for m in min_effects)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["artifacts", "remeasure", "aa", "slow", "table"])
    ap.add_argument("--out", type=Path, default=Path("calibration.json"))
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "detbench-calibration"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="slow: only these targets (e.g. 0.05)")
    args = ap.parse_args(argv)
    doc = _load(args.out)
    if args.part == "artifacts":
        part_artifacts(args, doc)
    elif args.part == "remeasure":
        part_remeasure(args, doc)
    elif args.part == "aa":
        part_aa(args, doc)
    elif args.part == "slow":
        part_slow(args, doc)
    _save(args.out, doc)
    print(table(doc, (0.02, PAIRED_MIN_EFFECT, 0.04)))
    return 0


if __name__ == "__main__":
    configure_environment()
    sys.exit(main())
