"""Measure the family matrix's models for README "Model families": write docs/families.json.

    nice -n 19 python scripts/measure_families.py                      # every family, report --quick each
    python scripts/measure_families.py --families yolo11n --out /tmp/f.json
    python scripts/measure_families.py --report yolo11n=/tmp/r/report.json   # reuse a report already run
    python scripts/measure_families.py --markdown docs/families.json         # README's table

For each family (detbench.model.families: trained briefly from scratch on the synthetic set,
cached), the training record (epochs, images, wall time, val mAP of ultralytics' own validation)
and one ``detbench report --quick --weights W`` run in a child process: each backend's mAP50 /
mAP50-95 and their change from eager PyTorch's on the same images, its p50 latency at batch 1 as a
ratio to eager PyTorch's in the same run (ratios only: absolute times belong to this machine and
its load), and its PASS/FAIL. The machine (CPU model, flags, load average) is report.json's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from detbench.model.families import FAMILIES, FamilySettings, family_dir, family_weights
from detbench.model.train import METRICS_FILE
from detbench.paths import configure_environment

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "families.json"
COMMAND = "detbench report --quick --weights <cache>/families/<family>-<key>/best.pt"


@dataclass(frozen=True)
class BackendRow:
    name: str
    mAP50: float
    mAP50_95: float
    mAP50_delta: float  # this backend's minus eager PyTorch's, same images
    mAP50_95_delta: float
    p50_ratio: float  # this backend's p50 / eager PyTorch's p50, same report run
    passed: bool  # every report verdict check of this backend passed


@dataclass(frozen=True)
class FamilyRow:
    family: str
    model: str
    epochs: int
    train_images: int
    val_images: int
    imgsz: int
    batch: int
    train_wall_time_s: float
    parameters: int
    gflops: float
    val_mAP50: float  # ultralytics' validation of best.pt on the full val split
    val_mAP50_95: float
    report_val_images: int  # the images report --quick scored (its first N val images)
    report_passed: bool
    report_load_average: list[float]  # 1, 5, 15 min, when this family's report started
    backends: list[BackendRow]


@dataclass(frozen=True)
class Machine:
    cpu_model: str
    cpu_flags: list[str]
    logical_cpus: int
    versions: dict[str, str]


@dataclass(frozen=True)
class FamiliesDoc:
    schema: int
    command: str
    report_command: str
    machine: Machine
    families: list[FamilyRow]


def family_row(family: str, report: dict) -> FamilyRow:
    settings = FamilySettings(family=family)
    metrics = json.loads((family_dir(settings) / METRICS_FILE).read_text())
    rows = {b["name"]: b for b in report["backends"]}
    ref = rows["pytorch"]
    failed = set(report["verdict"]["failed_backends"])
    backends = [
        BackendRow(
            name=name,
            mAP50=b["accuracy"]["mAP50"],
            mAP50_95=b["accuracy"]["mAP50-95"],
            mAP50_delta=b["accuracy"]["mAP50"] - ref["accuracy"]["mAP50"],
            mAP50_95_delta=b["accuracy"]["mAP50-95"] - ref["accuracy"]["mAP50-95"],
            p50_ratio=b["latency_ms"]["p50"] / ref["latency_ms"]["p50"],
            passed=name not in failed,
        )
        for name, b in rows.items()
    ]
    return FamilyRow(
        family=family,
        model=FAMILIES[family],
        epochs=settings.epochs,
        train_images=settings.train,
        val_images=settings.val,
        imgsz=settings.imgsz,
        batch=settings.batch,
        train_wall_time_s=round(metrics["train_wall_time_s"], 1),
        parameters=metrics["model"]["parameters"],
        gflops=round(metrics["model"]["gflops"], 3),
        val_mAP50=metrics["final"]["mAP50"],
        val_mAP50_95=metrics["final"]["mAP50-95"],
        report_val_images=report["settings"]["val_images"],
        report_passed=report["verdict"]["passed"],
        report_load_average=report["environment"]["load_average"],
        backends=backends,
    )


TABLE_BACKENDS = ("onnxruntime", "openvino", "onnxruntime-int8", "openvino-int8")


def markdown(doc: dict) -> str:
    """README "Model families"' table from a families.json document."""
    head = " / ".join(f"`{b}`" for b in TABLE_BACKENDS)
    lines = [
        f"| family | params | training | fp32 val mAP50 / mAP50-95 | mAP50 change: {head} "
        f"| p50 / eager PyTorch: {head} | report |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in doc["families"]:
        rows = {b["name"]: b for b in f["backends"]}
        delta = " / ".join(f"{rows[b]['mAP50_delta']:+.4f}" if b in rows else "-" for b in TABLE_BACKENDS)
        ratio = " / ".join(f"{rows[b]['p50_ratio']:.2f}" if b in rows else "-" for b in TABLE_BACKENDS)
        training = f"{f['epochs']} epochs x {f['train_images']} images, {f['train_wall_time_s'] / 60:.1f} min"
        lines.append(
            f"| {f['family']} | {f['parameters'] / 1e6:.2f} M | {training} "
            f"| {f['val_mAP50']:.3f} / {f['val_mAP50_95']:.3f} | {delta} | {ratio} "
            f"| {'PASS' if f['report_passed'] else 'FAIL'} |"
        )
    return "\n".join(lines)


def run_report(weights: Path, out: Path) -> dict:
    """``detbench report --quick`` in a child process, as a user runs it; its report.json."""
    cmd = [
        sys.executable,
        "-m",
        "detbench.cli",
        "report",
        "--quick",
        "--weights",
        str(weights),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if not (out / "report.json").is_file():
        raise SystemExit(f"report failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((out / "report.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated (default: all)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument(
        "--report", action="append", default=[], metavar="FAMILY=PATH", help="use this report.json, run none"
    )
    ap.add_argument(
        "--markdown", type=Path, metavar="JSON", help="print README's table of this file, run nothing"
    )
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    given = dict(item.split("=", 1) for item in args.report)
    rows, report = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            weights = family_weights(FamilySettings(family=family))
            if family in given:
                report = json.loads(Path(given[family]).read_text())
            else:
                report = run_report(weights, Path(tmp) / family)
            rows.append(family_row(family, report))
            print(f"{family}: report {'PASS' if rows[-1].report_passed else 'FAIL'}", file=sys.stderr)
    env = report["environment"]
    doc = FamiliesDoc(
        schema=1,
        command="python scripts/measure_families.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        report_command=COMMAND,
        machine=Machine(env["cpu_model"], env["cpu_flags"], env["logical_cpus"], env["versions"]),
        families=rows,
    )
    args.out.write_text(json.dumps(asdict(doc), indent=2) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    configure_environment()
    raise SystemExit(main())
