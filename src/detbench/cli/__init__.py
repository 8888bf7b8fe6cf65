"""The ``detbench`` command: thin subcommands over the package modules.

One module per subcommand (``data``, ``train``, ``export``, ``predict``, ``report``, ``tune``, ``gate``,
``history``, ``dashboard``, ``ab``), each with ``add_parser`` and the functions its options run, like asv's
``commands/``; this package holds ``main``, the parser and the argument types they share. argparse
is used here only: the modules below take settings dataclasses or keyword arguments.

Errors in the user's input print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
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


# -- shared by subcommands --------------------------------------------------------------------


def _bench_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights", type=_existing, help="ultralytics detection checkpoint (default: the YOLOv8n baseline)"
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


def _workbench(args: argparse.Namespace, *, export=None):
    """The workbench of ``_bench_options``' flags (INT8 calibrates on --data's train split)."""
    from detbench.runtimes.workbench import Workbench

    return Workbench.from_options(
        args.weights,
        args.data,
        imgsz=args.imgsz,
        threads=args.threads,
        artifacts=args.artifact or (),
        export=export,
    )


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Imported here: each subcommand module imports its helpers from this package.
    from detbench.cli import ab, dashboard, data, export, gate, history, predict, report, train, tune

    parser = _Parser(
        prog="detbench",
        description="Accuracy, size and latency of a YOLO detector on every CPU runtime.",
        epilog="`detbench COMMAND -h` shows a command's options.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    # Not required: with no subcommand, main() prints that level's help (its subcommand listing).
    parser.set_defaults(func=None, help_of=parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in (data, train, export, predict, report, tune, gate, history, dashboard, ab):
        command.add_parser(sub)
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
