"""The ``detbench`` command: thin subcommands over the package modules.

Errors in the user's input print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from detbench.errors import DetbenchError


class _Parser(argparse.ArgumentParser):
    """argparse prints usage plus a message; we want one clear line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SystemExit(_fail(f"{self.prog}: {message}", code=2))


def _fail(message: str, code: int = 1) -> int:
    print(f"detbench: error: {message}", file=sys.stderr)
    return code


def _nonneg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


STRIDE = 32  # YOLOv8's largest feature stride: input sizes must be multiples of it
MIN_USEFUL_OPSET = 11  # YOLOv8's Upsample exports as Resize, which opset 11 introduced in this form


def _imgsz(text: str) -> int:
    """A model input size: a positive multiple of the stride (ultralytics would round it up)."""
    value = _positive(text)
    if value % STRIDE:
        up = -(-value // STRIDE) * STRIDE
        raise argparse.ArgumentTypeError(
            f"{value} is not a multiple of the model's stride {STRIDE} (the feature maps would not "
            f"line up); use {up}"
        )
    return value


def _opset(text: str) -> int:
    from detbench._compat import onnx_opset_range

    value = _positive(text)
    low, high = onnx_opset_range()
    low = max(low, MIN_USEFUL_OPSET)
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"opset {value} is not supported; choose {low} to {high}")
    return value


def _artifact(text: str) -> str:
    """``BACKEND=PATH``: a known non-pytorch backend and an existing file or folder."""
    from detbench.runtimes.backends import REGISTRY

    name, sep, path = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"{text!r} must look like BACKEND=PATH")
    if name not in REGISTRY:
        raise argparse.ArgumentTypeError(
            f"{text!r}: unknown backend {name!r}; choose from {', '.join(REGISTRY)}"
        )
    if name == "pytorch":
        raise argparse.ArgumentTypeError("pytorch runs the weights: pass them with --weights")
    if not Path(path).expanduser().exists():
        raise argparse.ArgumentTypeError(f"{text!r}: {path}: no such file or directory")
    return text


def _out_dir(text: str) -> Path:
    """An output folder: absent (it is created) or a directory, never an existing file."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a directory")
    return path


def _fraction(low_open: bool = False, high_open: bool = False):
    """A float in [0, 1], with either end excluded; the message names the allowed range."""
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        below = value <= 0 if low_open else value < 0
        above = value >= 1 if high_open else value > 1
        if below or above or value != value:  # value != value: NaN
            raise argparse.ArgumentTypeError(f"must be in {lo}0, 1{hi}, got {text}")
        return value

    return parse


def _choices(what: str, allowed) -> object:
    """argparse type for a comma-separated list drawn from ``allowed`` (read lazily)."""

    def parse(text: str) -> list[str]:
        known = list(allowed())
        items = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in items if t not in known]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what}(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(known)}"
            )
        return items

    return parse


def _all_formats():
    from detbench.runtimes.export import FORMATS

    return FORMATS


def _all_backends():
    from detbench.runtimes.backends import REGISTRY

    return REGISTRY


_formats = _choices("format", _all_formats)
_backends = _choices("backend", _all_backends)


def _counts(text: str) -> list[int]:
    """A comma-separated list of positive whole numbers (thread counts)."""
    return sorted({_positive(t.strip()) for t in text.split(",") if t.strip()}) or [_positive("")]


def _existing(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or directory")
    return path


def _report_json(text: str) -> Path:
    path = _existing(text)
    if path.is_dir():
        path = path / "report.json"
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"{text}: a directory without report.json")
    return path


# -- subcommands ------------------------------------------------------------------------------


def cmd_data_synth(args: argparse.Namespace) -> int:
    from detbench.data.datasets import SynthConfig, write_synthetic

    out = write_synthetic(
        args.out, SynthConfig(train=args.train, val=args.val, imgsz=args.imgsz, seed=args.seed)
    )
    print(out)
    return 0


def cmd_data_from_voc(args: argparse.Namespace) -> int:
    from detbench.data.voc import convert_voc

    report = convert_voc(args.src, args.out, val_fraction=args.val_fraction, skip_bad=args.skip_bad)
    for p in report.problems:
        print(f"skipped {p.file}: {p.reason}", file=sys.stderr)
    print(
        f"{report.data_yaml}: {report.converted} images, {report.boxes} boxes, "
        f"{len(report.problems)} problem(s)"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from detbench.data.datasets import load_dataset
    from detbench.data.labels import validate_dataset
    from detbench.model.train import TrainConfig, train

    validate_dataset(load_dataset(args.data), allow_background=True)
    weights = train(
        TrainConfig(
            data=str(args.data),
            model=args.model,
            imgsz=args.imgsz,
            epochs=args.epochs,
            batch=args.batch,
            seed=args.seed,
        ),
        args.out,
    )
    print(weights)
    print(weights.parent / "metrics.json")
    return 0


def _workbench(args: argparse.Namespace, *, need_calib: bool, export=None):
    from detbench.data.datasets import load_dataset
    from detbench.model.baseline import resolve_weights, synthetic_dataset
    from detbench.model.checkpoint import load_detection_model
    from detbench.runtimes.backends import BackendSettings
    from detbench.runtimes.workbench import Workbench, parse_artifact_overrides

    weights = resolve_weights(args.weights)
    _, info = load_detection_model(weights)
    imgsz = args.imgsz or info.imgsz
    calib: list[Path] = []
    if need_calib:
        data = args.data or synthetic_dataset()
        ds = load_dataset(data)
        calib = ds.images("train")
    return Workbench(
        weights=weights,
        imgsz=imgsz,
        names=info.names,
        settings=BackendSettings(threads=args.threads),
        overrides=parse_artifact_overrides(args.artifact or []),
        calib_images=calib,
        export=export,
    )


def cmd_export(args: argparse.Namespace) -> int:
    from detbench.runtimes.backends import REGISTRY
    from detbench.runtimes.export import ExportSettings

    formats = args.format
    settings = ExportSettings(
        opset=args.opset, dynamic_batch=not args.static_batch, simplify=not args.no_simplify
    )
    bench = _workbench(args, need_calib="onnx-int8" in formats, export=settings)
    by_format = {cls.artifact_format: name for name, cls in REGISTRY.items()}
    for fmt in formats:
        print(f"{fmt}\t{bench.artifact(by_format[fmt])}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from detbench.data.images import load_image
    from detbench.runtimes.postprocess import postprocess
    from detbench.runtimes.preprocess import preprocess

    bench = _workbench(args, need_calib=args.backend == "onnxruntime-int8")
    backend = bench.load(args.backend)
    results, bad = [], 0
    for path in args.images:
        # One bad file must not cost the others their results: report it on its own line, go on.
        try:
            x, infos = preprocess([load_image(path)], bench.imgsz)
        except (DetbenchError, ValueError, OSError) as exc:
            bad += 1
            _fail(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            results.append({"image": str(path), "error": str(exc), "detections": None})
            continue
        det = postprocess(backend.run(x), infos, bench.names, conf=args.conf)[0]
        results.append({"image": str(path), "error": None, "detections": det.to_list()})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["error"] is not None:
                continue
            print(f"{r['image']}: {len(r['detections'])} detection(s)")
            for d in r["detections"]:
                print(f"  {d['class_name']:<9} {d['score']:.3f}  {d['xyxy']}")
    if bad and len(args.images) > 1:
        return _fail(f"{bad} of {len(args.images)} images could not be read (each listed above)")
    return 1 if bad else 0


def cmd_report(args: argparse.Namespace) -> int:
    from detbench.report.build import run_report

    return run_report(args)


def cmd_tune(args: argparse.Namespace) -> int:
    from detbench.tune.run import run_tune

    return run_tune(args)


def cmd_gate(args: argparse.Namespace) -> int:
    from detbench.history import gate as history_gate
    from detbench.perf import gate

    if args.history is not None:
        if args.baseline_file or args.candidate_file:
            raise SystemExit(_fail("gate: pass either two run files or --history, not both", 2))
        return history_gate.run(args)
    if not (args.baseline_file and args.candidate_file):
        raise SystemExit(
            _fail("gate: the following arguments are required: baseline, candidate (or --history)", 2)
        )
    return gate.run(args)


def _block_options(args: argparse.Namespace) -> dict[str, int]:
    if args.block_calls <= args.discard:
        message = f"ab: --block-calls ({args.block_calls}) must exceed --discard ({args.discard})"
        raise SystemExit(_fail(message, 2))
    return {"blocks": args.blocks, "block_calls": args.block_calls, "discard": args.discard}


def cmd_dashboard(args: argparse.Namespace) -> int:
    from detbench.report import dashboard

    return dashboard.run(args)


def cmd_ab(args: argparse.Namespace) -> int:
    from detbench.perf import gate

    if args.envs:
        from detbench.perf.abenv import ab_environments

        worker = ["--backend", args.backend, "--threads", str(args.threads)]
        if args.weights:
            worker += ["--weights", str(args.weights.resolve())]
        verdict, info_a, info_b = ab_environments(str(args.a), str(args.b), worker, **_block_options(args))
        for side, info in (("A", info_a), ("B", info_b)):
            v = info["versions"]
            print(f"{side}: torch {v['torch']}, onnxruntime {v['onnxruntime']}, openvino {v['openvino']}")
        print(gate.format_table([verdict]))
        if args.json:
            print(gate.verdicts_to_json([verdict], {**_block_options(args), "a": info_a, "b": info_b}))
        return 1 if verdict.status == "regression" else 0

    from detbench.data.synth import make_scene
    from detbench.runtimes.backends import BackendSettings, create
    from detbench.runtimes.preprocess import preprocess

    if args.backend == "pytorch":
        # A usage error (exit 2), like argparse's own: this backend/mode pair is never valid.
        message = "ab: --backend pytorch needs --envs (it runs a checkpoint, not an artifact)"
        raise SystemExit(_fail(message, 2))
    loaded = []
    for path in (args.a, args.b):
        backend = create(args.backend, BackendSettings(threads=args.threads))
        backend.load(path)
        loaded.append(backend)
    spec = loaded[0].spec
    assert spec is not None
    image, _ = make_scene(0, "val", 0, spec.height)
    x, _ = preprocess([image], spec.height)
    verdict = gate.ab(
        lambda: loaded[0].run(x),
        lambda: loaded[1].run(x),
        **_block_options(args),
        name=f"{args.backend}: {args.a.name} vs {args.b.name}",
    )
    print(gate.format_table([verdict]))
    if args.json:
        print(gate.verdicts_to_json([verdict], _block_options(args)))
    return 1 if verdict.status == "regression" else 0


# -- parser -----------------------------------------------------------------------------------


def _bench_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights", type=_existing, help="YOLOv8 detection checkpoint (default: committed baseline)"
    )
    p.add_argument("--data", type=_existing, help="data.yaml (default: the synthetic dataset)")
    p.add_argument(
        "--imgsz", type=_imgsz, help=f"model input size, a multiple of {STRIDE} (default: the checkpoint's)"
    )
    p.add_argument("--threads", type=_positive, default=1, help="threads for every backend (default 1)")
    p.add_argument(
        "--artifact",
        action="append",
        type=_artifact,
        metavar="BACKEND=PATH",
        help="run this artifact instead of exporting one (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    from detbench.runtimes.backends import REGISTRY
    from detbench.runtimes.export import FORMATS

    parser = _Parser(
        prog="detbench",
        description="Accuracy, size and latency of a YOLO detector on every CPU runtime.",
        epilog="`detbench COMMAND -h` shows a command's options.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    # Not required: with no subcommand, main() prints that level's help (its subcommand listing).
    parser.set_defaults(func=None, help_of=parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    data = sub.add_parser("data", help="datasets: synthetic generator, VOC converter")
    data.set_defaults(help_of=data)
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=_Parser)
    s = dsub.add_parser("synth", help="write the synthetic colorful-fashion dataset (YOLO format)")
    s.add_argument("--out", type=_out_dir, required=True)
    s.add_argument("--train", type=_positive, default=1500)
    s.add_argument("--val", type=_positive, default=200)
    s.add_argument("--imgsz", type=_positive, default=128)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_data_synth)
    v = dsub.add_parser("from-voc", help="convert a Pascal-VOC tree (the real dataset) to YOLO format")
    v.add_argument("src", type=_existing)
    v.add_argument("--out", type=_out_dir, required=True)
    v.add_argument("--val-fraction", type=_fraction(high_open=True), default=0.2)
    v.add_argument("--skip-bad", action="store_true", help="convert the good files, list the bad ones")
    v.set_defaults(func=cmd_data_from_voc)

    t = sub.add_parser("train", help="train a YOLOv8 baseline (the original study's settings by default)")
    t.add_argument("--data", type=_existing, required=True)
    t.add_argument("--model", default="yolov8n.yaml", help="scale yaml (from scratch) or .pt to fine-tune")
    t.add_argument("--imgsz", type=_imgsz, default=128)
    t.add_argument("--epochs", type=_positive, default=5)
    t.add_argument("--batch", type=_positive, default=8)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=_out_dir, default=Path("runs/train"))
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="export the baseline (cached) and print the artifact paths")
    _bench_options(e)
    e.add_argument(
        "--format", type=_formats, default=list(FORMATS), help=f"comma-separated, from {', '.join(FORMATS)}"
    )
    e.add_argument("--opset", type=_opset, default=17, help="ONNX opset (default 17)")
    e.add_argument("--static-batch", action="store_true", help="export a fixed batch of 1 (default: dynamic)")
    e.add_argument("--no-simplify", action="store_true", help="skip onnxslim simplification")
    e.set_defaults(func=cmd_export)

    pr = sub.add_parser("predict", help="detect garments in images with any backend")
    pr.add_argument("images", nargs="+", type=Path, help="image files; unreadable ones are listed, not fatal")
    pr.add_argument("--backend", choices=list(REGISTRY), default="onnxruntime")
    pr.add_argument("--conf", type=_fraction(), default=0.25)
    pr.add_argument("--json", action="store_true")
    _bench_options(pr)
    pr.set_defaults(func=cmd_predict)

    r = sub.add_parser("report", help="the main job: accuracy, size and latency of every backend")
    _bench_options(r)
    r.add_argument("--backends", type=_backends, default=list(REGISTRY))
    r.add_argument("--batch", type=_positive, default=8, help="batch size for the throughput run")
    r.add_argument("--out", type=_out_dir, default=Path("report"))
    r.add_argument("--quick", action="store_true", help="fewer images and rounds (about a third of the time)")
    r.add_argument(
        "--val-images", type=_positive, help="score the first N val images (default: all; 64 with --quick)"
    )
    r.add_argument(
        "--rounds",
        type=_positive,
        help="latency calls kept per backend at batch 1, in alternated blocks of up to 20 "
        "(default 160; 40 with --quick); throughput keeps a third",
    )
    r.add_argument(
        "--compare",
        type=_report_json,
        metavar="OLD/report.json",
        help="show each backend's change against an earlier report, with the gate's verdict",
    )
    r.add_argument(
        "--tune",
        type=Path,
        help="a detbench tune result whose recommended row is marked (default: OUT/tune.json if present)",
    )
    r.set_defaults(func=cmd_report)

    tu = sub.add_parser(
        "tune", help="search backends x threads x batch layout for the fastest configuration that verifies"
    )
    tu.add_argument(
        "--weights", type=_existing, help="YOLOv8 detection checkpoint (default: committed baseline)"
    )
    tu.add_argument("--data", type=_existing, help="data.yaml (default: the synthetic dataset)")
    tu.add_argument("--imgsz", type=_positive, help="model input size (default: the checkpoint's)")
    tu.add_argument("--backends", type=_backends, help="backends to search (default: every registered one)")
    tu.add_argument("--threads", type=_counts, help="thread counts, e.g. 1,2 (default: 1 .. usable cores)")
    tu.add_argument(
        "--artifact", action="append", metavar="BACKEND=PATH", help="search this artifact for BACKEND"
    )
    tu.add_argument("--quick", action="store_true", help="64 val images, short timing, no static-batch twins")
    tu.add_argument("--val-images", type=_positive, help="score the first N val images (default: all)")
    tu.add_argument("--blocks", type=_positive, help="timing blocks per configuration (default 8; 4 quick)")
    tu.add_argument("--no-static", action="store_true", help="skip the static-batch export twins")
    tu.add_argument(
        "--latency-only", action="store_true", help="no mAP (untrained weights): verify raw head + detections"
    )
    tu.add_argument("--out", type=Path, default=Path("tune"), help="output folder (default ./tune)")
    tu.add_argument("--json", action="store_true", help="print tune.json instead of the table")
    tu.set_defaults(func=cmd_tune)

    g = sub.add_parser(
        "gate", help="compare two saved runs, or a run with its history (--history); exit 1 on a regression"
    )
    from detbench.history import gate as history_gate
    from detbench.perf import gate as gate_mod

    gate_mod.add_arguments(g)
    history_gate.add_arguments(g)
    g.set_defaults(func=cmd_gate)

    d = sub.add_parser("dashboard", help="one offline HTML page: latency history, verdicts, report, tune")
    from detbench.report import dashboard

    dashboard.add_arguments(d)
    d.set_defaults(func=cmd_dashboard)

    ab = sub.add_parser(
        "ab", help="A/B latency in alternated blocks: two artifacts on one backend, or (--envs) two Pythons"
    )
    ab.add_argument("a", type=_existing, help="artifact A, or with --envs the Python of environment A")
    ab.add_argument("b", type=_existing, help="artifact B, or with --envs the Python of environment B")
    ab.add_argument("--envs", action="store_true", help="A and B are Python interpreters of two environments")
    ab.add_argument("--weights", type=_existing, help="with --envs: checkpoint (default: committed baseline)")
    ab.add_argument("--backend", choices=list(REGISTRY), default="onnxruntime")
    # --rounds/--warmup: the names of the per-call interleaving these replaced, kept as aliases.
    ab.add_argument(
        "--blocks",
        "--rounds",
        type=_positive,
        default=gate_mod.BLOCKS,
        help=f"blocks per side ({gate_mod.BLOCKS})",
    )
    ab.add_argument(
        "--block-calls",
        type=_positive,
        default=gate_mod.BLOCK_CALLS,
        help=f"consecutive calls per block ({gate_mod.BLOCK_CALLS})",
    )
    ab.add_argument(
        "--discard",
        "--warmup",
        type=_nonneg,
        default=gate_mod.DISCARD,
        help=f"calls dropped at each block's start ({gate_mod.DISCARD})",
    )
    ab.add_argument("--threads", type=_positive, default=1)
    ab.add_argument("--json", action="store_true")
    ab.set_defaults(func=cmd_ab)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from detbench.paths import configure_environment

    configure_environment()  # before anything imports ultralytics; importing detbench sets nothing
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if args.func is None:  # `detbench` or `detbench data` alone: show what there is to run
            args.help_of.print_help()
            return 0
        args.argv = argv  # for outputs that record the command that made them
        return int(args.func(args) or 0)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else _fail(str(exc.code), 2)
    except (DetbenchError, ValueError, OSError, ModuleNotFoundError) as exc:
        if debug:
            raise
        return _fail(str(exc))
    except Exception as exc:  # a bug, not bad input: still one line, with the way to the traceback
        if debug:
            raise
        return _fail(f"internal error {type(exc).__name__}: {exc} (rerun with --debug for the traceback)")
    except KeyboardInterrupt:
        return _fail("interrupted", 130)

