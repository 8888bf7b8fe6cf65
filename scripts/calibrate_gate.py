"""Calibrate the in-run latency gate (``detbench ab``, ``gate.ab``) on the real ONNX Runtime backend.

    python scripts/calibrate_gate.py artifacts --out calib.json   # build + measure the slowed ONNX files
    python scripts/calibrate_gate.py aa --out calib.json --runs 40   # fresh A/A runs
    python scripts/calibrate_gate.py slow --out calib.json --runs 20 # fresh runs per slowed artifact
    python scripts/calibrate_gate.py table --out calib.json          # print the table
    python scripts/calibrate_gate.py sessions --out calib.json --rounds 20 [--history URL]

``sessions`` calibrates the cross-session route a user's CI runs (issue 19): every trial is separate
pytest sessions, each a new process. Per round, a baseline session saves its run
(``pytest --pyargs detbench.suite -k <the ONNX Runtime latency benchmark> --benchmark-enable
--benchmark-save-data --benchmark-autosave --detbench-artifact onnxruntime=a.onnx``, tagged ``main``),
then each candidate (two A/A copies and every slowed artifact, in a shuffled order) is compared in a
new session with ``--benchmark-compare=0001 --detbench-compare-fail``, which re-times the saved
artifact beside the candidate (``history.rebaseline``, its default ``full`` plan). With ``--history
URL`` every session also saves to that store and, after each candidate session, ``detbench gate
--history URL --candidate <its tag>`` (a new process) re-baselines it against the round's main run.
The CI cache folder (``DETBENCH_CACHE``: dataset, local history, stored artifacts) is shared by the
rounds, as a CI job restores it; each round has its own ``.benchmarks`` storage. ``--kinds aa`` keeps
only some candidates; ``--history-only`` saves the candidates without comparing and judges them by
``detbench gate --history`` alone (more runs of that route in the same time).

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
import re
import shutil
import subprocess
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


SUITE_SELECT = "test_latency_yolov8n_128_batch1 and onnxruntime and not int8"
SUITE_BENCH = "test_latency_yolov8n_128_batch1[onnxruntime]"
# One benchmark's line in the detbench gate section (history.rebaseline.Comparison.describe).
_LINE = re.compile(
    r"\[onnxruntime\] \((?P<comparison>paired in this job|unpaired across sessions; why: .*?)\): "
    r"(?P<outcome>[a-z ]+): candidate/baseline (?P<ratio>[0-9.]+)"
)
_PAIRED = re.compile(
    r"CI (?P<lo>[0-9.]+)-(?P<hi>[0-9.]+|inf);.* after (?P<blocks>\d+) blocks/side, (?P<s>[0-9.]+) s"
)


def _verdict_line(text: str, returncode: int) -> dict:
    """The benchmark's verdict from a session's output (the gate's one line for it) and exit status."""
    lines = [line for line in text.splitlines() if SUITE_BENCH in line and _LINE.search(line)]
    if len(lines) != 1:
        return {"outcome": "no verdict line", "rc": returncode, "tail": text[-2000:]}
    m, p = _LINE.search(lines[0]), _PAIRED.search(lines[0])
    rec = {
        "comparison": m["comparison"],
        "outcome": m["outcome"],
        "ratio": float(m["ratio"]),
        "rc": returncode,
        "line": lines[0],
    }
    if p:
        rec.update(ci=[float(p["lo"]), float(p["hi"])], blocks=int(p["blocks"]), seconds=float(p["s"]))
    return rec


def _suite_session(root: Path, cache: Path, onnx: Path, tag: str, history: str | None, *extra: str):
    """One ``pytest --pyargs detbench.suite`` process on the ONNX Runtime latency benchmark, as the
    README's CI route runs it (pytest-benchmark's default rounds), saving its run and raw rounds."""
    argv = [
        *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"),
        *("--pyargs", "detbench.suite", "-k", SUITE_SELECT),
        *("--benchmark-enable", "--benchmark-save-data", "--benchmark-autosave"),
        f"--benchmark-storage=file://{root}/.benchmarks",
        *("--detbench-artifact", f"onnxruntime={onnx}", f"--detbench-history-tag={tag}"),
        *([f"--detbench-history={history}"] if history else []),
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.update(DETBENCH_CACHE=str(cache))
    env.pop("DETBENCH_HISTORY", None)
    return subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=900)


def _gate_history(history: str, tag: str, cache: Path) -> subprocess.CompletedProcess:
    """``detbench gate --history URL --candidate TAG`` in a new process: re-baselined against main."""
    env = {**os.environ, "DETBENCH_CACHE": str(cache)}
    env.pop("DETBENCH_HISTORY", None)
    cli = "import sys; from detbench.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", cli, "gate", "--history", history, "--candidate", tag]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)


def _candidates(doc: dict) -> list[tuple[str, Path]]:
    """Per round: the baseline's copy twice (A/A), then every slowed artifact."""
    slowed = [(key, Path(art["path"])) for key, art in doc["artifacts"].items()]
    return [("aa", Path(doc["aa"])), ("aa", Path(doc["aa"])), *slowed]


def part_sessions(args: argparse.Namespace, doc: dict) -> None:
    work = Path(args.dir)
    cache = work / "ci-cache"  # the CI job's cached folder, shared by the rounds
    results = doc.setdefault("sessions", {"route": {}, "history_gate": {}})
    start = doc.setdefault("sessions_rounds", 0)
    for r in range(start, start + args.rounds):
        t0 = time.perf_counter()
        root = work / "sessions" / f"r{r:03d}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        base = shutil.copyfile(doc["baseline"], root / "a.onnx")
        saved = _suite_session(root, cache, base, "main", args.history)
        if saved.returncode != 0:
            raise SystemExit(
                f"round {r}: baseline session failed:\n{saved.stdout[-3000:]}{saved.stderr[-3000:]}"
            )
        order = np.random.default_rng(r).permutation(len(_candidates(doc)))
        for i in order:
            kind, path = _candidates(doc)[i]
            if args.kinds and kind not in args.kinds:
                continue
            cand = shutil.copyfile(path, root / f"b{i}.onnx")
            tag = f"r{r}-b{i}-{kind}"
            compare = () if args.history_only else ("--benchmark-compare=0001", "--detbench-compare-fail")
            out = _suite_session(root, cache, cand, tag, args.history, *compare)
            if args.history_only:
                if out.returncode != 0:
                    raise SystemExit(f"round {r}: candidate session failed:\n{out.stdout[-3000:]}")
            else:
                results["route"].setdefault(kind, []).append(_verdict_line(out.stdout, out.returncode))
            if args.history:
                g = _gate_history(args.history, tag, cache)
                results["history_gate"].setdefault(kind, []).append(_verdict_line(g.stdout, g.returncode))
            _save(args.out, doc)
        doc["sessions_rounds"] = r + 1
        _save(args.out, doc)
        print(f"round {r}: {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.2f}", flush=True)
    print(sessions_table(doc))


def sessions_table(doc: dict) -> str:
    """Flagged (regression) / no regression / unknown / unpaired per artifact, for each route."""
    lines = []
    for route, title in (
        ("route", "pytest --benchmark-compare"),
        ("history_gate", "detbench gate --history"),
    ):
        runs = doc.get("sessions", {}).get(route, {})
        if not runs:
            continue
        lines.append(
            f"{title}: {'artifact':<28} {'runs':>5} {'regression':>11} {'no regr.':>9} "
            f"{'unknown':>8} {'unpaired':>9}"
        )
        for kind, recs in runs.items():
            name = "A/A (a copy)" if kind == "aa" else f"+{doc['artifacts'][kind]['slowdown']:.1%} ({kind})"
            count = {
                o: sum(r.get("outcome") == o for r in recs)
                for o in ("regression", "no regression", "unknown")
            }
            unpaired = sum(not r.get("comparison", "").startswith("paired") for r in recs)
            lines.append(
                f"{'':<{len(title) + 1}} {name:<28} {len(recs):>5} {count['regression']:>11} "
                f"{count['no regression']:>9} {count['unknown']:>8} {unpaired:>9}"
            )
    return "\n".join(lines)


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
    ap.add_argument("part", choices=["artifacts", "remeasure", "aa", "slow", "sessions", "table"])
    ap.add_argument("--out", type=Path, default=Path("calibration.json"))
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "detbench-calibration"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="slow: only these targets (e.g. 0.05)")
    ap.add_argument("--rounds", type=int, default=20, help="sessions: rounds (2 A/A + each slowed artifact)")
    ap.add_argument("--history", help="sessions: also save to this store and gate with --history on it")
    ap.add_argument("--kinds", nargs="*", help="sessions: only these candidates (aa, 0.05, 0.10, 0.20)")
    ap.add_argument(
        "--history-only",
        action="store_true",
        help="sessions: candidates only saved, then judged by detbench gate --history (needs --history)",
    )
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
    elif args.part == "sessions":
        if args.history_only and not args.history:
            ap.error("--history-only needs --history URL")
        part_sessions(args, doc)
    _save(args.out, doc)
    print(table(doc, (0.02, PAIRED_MIN_EFFECT, 0.04)))
    print(sessions_table(doc))
    return 0


if __name__ == "__main__":
    configure_environment()
    sys.exit(main())
