"""The ``detbench`` command on bad input: non-zero exit, one ``detbench: error:`` line, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detbench.cli import main
from detbench.errors import HistoryError

CONSOLE_SCRIPT = Path(sys.executable).parent / "detbench"
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 123\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small corpus of bad inputs, shared by every case (all cheap to make)."""
    d = tmp_path_factory.mktemp("cli-corpus")
    made = {
        "corrupt.pt": np.random.default_rng(0).bytes(4096),
        "empty.pt": b"",
        "lfs.pt": LFS_POINTER.encode(),
        "corrupt.onnx": np.random.default_rng(1).bytes(4096),
        "corrupt.torchscript": b"PK\x03\x04" + bytes(100),
        "garbage.xml": np.random.default_rng(2).bytes(512),
        "truncated.json": b'{"benchmarks": [{"name": "x", "stats": {"data": [0.1, ',
        "empty.json": b"",
        "not-a-run.json": json.dumps({"machine_info": {}}).encode(),
        "no-timings.json": json.dumps({"benchmarks": [{"name": "x", "stats": {"mean": 0.1}}]}).encode(),
        "bad.yaml": b"train: [unclosed\n",
        "no-names.yaml": b"train: images/train\nval: images/val\n",
        "not-an-image.jpg": b"x",
        "a-file": b"",
    }
    for name, data in made.items():
        (d / name).write_bytes(data)
    (d / "garbage.bin").write_bytes(b"\0" * 64)
    (d / "dir").mkdir()
    return {name: d / name for name in [*made, "garbage.bin", "dir"]}


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A loadable untrained 10-class YOLOv8n checkpoint (64 px), for cases that get past the weights."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    path = tmp_path_factory.mktemp("untrained") / "untrained.pt"
    torch.save(
        {"model": DetectionModel("yolov8n.yaml", nc=10, verbose=False), "train_args": {"imgsz": 64}}, path
    )
    return path


def _run(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, list[str]]:
    code = main(argv)
    return code, capsys.readouterr().err.splitlines()


def _assert_one_line(code: int, err: list[str], expected_code: int, *fragments: str) -> None:
    assert code == expected_code, err
    assert len(err) == 1, "stderr is not one line:\n" + "\n".join(err)
    assert err[0].startswith("detbench: error: ")
    assert "Traceback" not in err[0]
    for fragment in fragments:
        assert fragment in err[0], f"{fragment!r} not in {err[0]!r}"


# (argv with {placeholders} from `files`, exit code, fragments the line must contain)
# Exit 2: argparse refused the arguments. Exit 1: the arguments parsed, the input is bad.
CASES = {
    # top level
    "unknown-command": ("frobnicate", 2, ["invalid choice: 'frobnicate'"]),
    # data
    "synth-missing-out": ("data synth", 2, ["--out"]),
    "synth-zero-train": ("data synth --out {dir}/s --train 0", 2, ["--train", "positive"]),
    "synth-negative-val": ("data synth --out {dir}/s --val -3", 2, ["--val", "positive"]),
    "synth-non-integer-imgsz": ("data synth --out {dir}/s --imgsz 1.5", 2, ["--imgsz", "'1.5'"]),
    "synth-out-under-a-file": ("data synth --out {a-file}/s --train 1 --val 1", 1, ["a-file"]),
    "voc-missing-src": ("data from-voc /nonexistent/voc --out {dir}/v", 2, ["/nonexistent/voc"]),
    "voc-not-a-voc-tree": ("data from-voc {dir} --out {dir}/v", 1, ["Annotations"]),
    "voc-bad-fraction": ("data from-voc {dir} --out {dir}/v --val-fraction 1.5", 2, ["--val-fraction"]),
    "voc-nan-fraction": ("data from-voc {dir} --out {dir}/v --val-fraction nan", 2, ["--val-fraction"]),
    # train (never gets as far as training)
    "train-missing-data": ("train", 2, ["--data"]),
    "train-nonexistent-data": ("train --data /nonexistent/data.yaml", 2, ["/nonexistent/data.yaml"]),
    "train-corrupt-yaml": ("train --data {bad.yaml}", 1, ["bad.yaml", "YAML"]),
    "train-yaml-without-names": ("train --data {no-names.yaml}", 1, ["no-names.yaml", "names"]),
    "train-zero-epochs": ("train --data {bad.yaml} --epochs 0", 2, ["--epochs"]),
    "train-negative-batch": ("train --data {bad.yaml} --batch -8", 2, ["--batch"]),
    # export
    "export-nonexistent-weights": ("export --weights /nonexistent/best.pt", 2, ["/nonexistent/best.pt"]),
    "export-corrupt-weights": ("export --weights {corrupt.pt}", 1, ["corrupt.pt", "cannot load checkpoint"]),
    "export-empty-weights": ("export --weights {empty.pt}", 1, ["empty.pt", "empty"]),
    "export-lfs-weights": ("export --weights {lfs.pt}", 1, ["lfs.pt", "LFS"]),
    "export-unknown-format": ("export --weights {corrupt.pt} --format onnx,tflite", 2, ["tflite"]),
    "export-zero-imgsz": ("export --imgsz 0", 2, ["--imgsz"]),
    "export-negative-threads": ("export --threads -2", 2, ["--threads"]),
    # predict
    "predict-missing-images": ("predict", 2, ["images"]),
    "predict-nonexistent-image": ("predict /nonexistent/a.jpg", 1, ["/nonexistent/a.jpg", "file not found"]),
    "predict-unknown-backend": ("predict {not-an-image.jpg} --backend tensorrt", 2, ["tensorrt"]),
    "predict-conf-out-of-range": ("predict {not-an-image.jpg} --conf 1.5", 2, ["--conf"]),
    "predict-conf-not-a-number": ("predict {not-an-image.jpg} --conf high", 2, ["--conf", "'high'"]),
    "predict-corrupt-weights": ("predict {not-an-image.jpg} --weights {corrupt.pt}", 1, ["corrupt.pt"]),
    # report (argument errors only: they come before any work)
    "report-unknown-backend": ("report --backends onnxruntime,tensorrt", 2, ["tensorrt"]),
    "report-no-backends": ("report --backends ,", 2, ["--backends"]),
    "report-zero-batch": ("report --batch 0", 2, ["--batch"]),
    "report-nonexistent-weights": ("report --weights /nonexistent/w.pt", 2, ["/nonexistent/w.pt"]),
    # gate
    "gate-missing-runs": ("gate", 2, ["baseline, candidate"]),
    "gate-nonexistent-run": ("gate /nonexistent/a.json {truncated.json}", 1, ["/nonexistent/a.json"]),
    "gate-truncated-json": (
        "gate {truncated.json} {truncated.json}",
        1,
        ["truncated.json", "not valid JSON"],
    ),
    "gate-empty-json": ("gate {empty.json} {empty.json}", 1, ["empty.json", "empty"]),
    "gate-not-a-run": ("gate {not-a-run.json} {not-a-run.json}", 1, ["not-a-run.json", "benchmarks"]),
    "gate-run-without-timings": (
        "gate {no-timings.json} {no-timings.json}",
        1,
        ["no-timings.json", "--benchmark-save-data"],
    ),
    "gate-directory": ("gate {dir} {dir}", 1, ["is a directory"]),
    "gate-alpha-out-of-range": ("gate {empty.json} {empty.json} --alpha 2", 2, ["--alpha"]),
    # ab
    "ab-missing-artifacts": ("ab", 2, ["a, b"]),
    "ab-nonexistent-artifact": ("ab /nonexistent/a.onnx {corrupt.onnx}", 2, ["/nonexistent/a.onnx"]),
    "ab-corrupt-onnx": ("ab {corrupt.onnx} {corrupt.onnx}", 1, ["corrupt.onnx", "ONNX"]),
    "ab-corrupt-torchscript": (
        "ab {corrupt.torchscript} {corrupt.torchscript} --backend torchscript",
        1,
        ["corrupt.torchscript"],
    ),
    "ab-garbage-openvino-xml": ("ab {garbage.xml} {garbage.xml} --backend openvino", 1, ["garbage.xml"]),
    "ab-pytorch-backend": ("ab {corrupt.onnx} {corrupt.onnx} --backend pytorch", 2, ["pytorch"]),
    "ab-zero-blocks": ("ab {corrupt.onnx} {corrupt.onnx} --blocks 0", 2, ["--blocks", "positive"]),
    "ab-zero-block-calls": ("ab {corrupt.onnx} {corrupt.onnx} --block-calls 0", 2, ["--block-calls"]),
    "ab-negative-discard": ("ab {corrupt.onnx} {corrupt.onnx} --discard -1", 2, ["--discard", ">= 0"]),
    "ab-zero-threads": ("ab {corrupt.onnx} {corrupt.onnx} --threads 0", 2, ["--threads"]),
    "ab-unknown-backend": ("ab {corrupt.onnx} {corrupt.onnx} --backend tensorrt", 2, ["tensorrt"]),
    # every option validated at the boundary, before any work (issue 12)
    "synth-non-integer-seed": ("data synth --out {dir}/s --seed x", 2, ["--seed"]),
    "synth-out-is-a-file": ("data synth --out {a-file}", 2, ["--out", "not a directory"]),
    "voc-out-is-a-file": ("data from-voc {dir} --out {a-file}", 2, ["--out", "not a directory"]),
    "train-imgsz-not-stride": ("train --data {bad.yaml} --imgsz 100", 2, ["--imgsz", "stride 32", "use 128"]),
    "train-out-is-a-file": ("train --data {bad.yaml} --out {a-file}", 2, ["--out", "not a directory"]),
    "train-non-integer-seed": ("train --data {bad.yaml} --seed 1.5", 2, ["--seed"]),
    "export-imgsz-not-stride": (
        "export --imgsz 100",
        2,
        ["--imgsz", "not a multiple of the model's stride 32"],
    ),
    "export-opset-too-old": ("export --opset 3", 2, ["--opset", "opset 3 is not supported", "choose 11 to"]),
    "export-opset-too-new": ("export --opset 99", 2, ["--opset", "opset 99 is not supported"]),
    "export-nonexistent-data": ("export --data /nonexistent/d.yaml", 2, ["--data", "/nonexistent/d.yaml"]),
    "export-override-without-equals": ("export --artifact onnxruntime", 2, ["--artifact", "BACKEND=PATH"]),
    "export-override-unknown-backend": (
        "export --artifact tensorrt={corrupt.onnx}",
        2,
        ["--artifact", "unknown backend 'tensorrt'"],
    ),
    "export-override-pytorch": ("export --artifact pytorch={corrupt.pt}", 2, ["--artifact", "--weights"]),
    "export-override-missing-file": (
        "export --artifact onnxruntime=/nonexistent/m.onnx",
        2,
        ["/nonexistent"],
    ),
    "predict-imgsz-not-stride": ("predict {not-an-image.jpg} --imgsz 100", 2, ["--imgsz", "stride 32"]),
    "predict-zero-threads": ("predict {not-an-image.jpg} --threads 0", 2, ["--threads"]),
    "report-imgsz-not-stride": (
        "report --imgsz 100",
        2,
        ["--imgsz", "not a multiple of the model's stride 32"],
    ),
    "report-zero-rounds": ("report --rounds 0", 2, ["--rounds"]),
    "report-zero-val-images": ("report --val-images 0", 2, ["--val-images"]),
    "report-zero-threads": ("report --threads 0", 2, ["--threads"]),
    "report-out-is-a-file": ("report --out {a-file}", 2, ["--out", "not a directory"]),
    "report-compare-missing": ("report --compare /nonexistent/report.json", 2, ["--compare", "/nonexistent"]),
    "report-compare-dir-without-report": ("report --compare {dir}", 2, ["--compare", "without report.json"]),
    "report-override-missing-file": ("report --artifact openvino=/nonexistent/m.xml", 2, ["--artifact"]),
    "gate-negative-min-effect": ("gate {empty.json} {empty.json} --min-effect -1", 2, ["--min-effect"]),
    "gate-one-min-samples": ("gate {empty.json} {empty.json} --min-samples 1", 2, ["--min-samples"]),
}


def _argv(template: str, files: dict[str, Path]) -> list[str]:
    for name, path in files.items():
        template = template.replace("{" + name + "}", str(path))
    assert "{" not in template, f"unknown placeholder in {template!r}"
    return template.split()


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line(capsys: pytest.CaptureFixture, files: dict[str, Path], case: str) -> None:
    """Each subcommand refuses bad or missing arguments with its exit code and one line naming the problem."""
    template, expected_code, fragments = CASES[case]
    code, err = _run(capsys, _argv(template, files))
    _assert_one_line(code, err, expected_code, *fragments)


def _subparsers(parser) -> dict:
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("argv", [[], ["data"]], ids=["detbench", "detbench-data"])
def test_no_subcommand_lists_the_subcommands(capsys: pytest.CaptureFixture, argv: list[str]) -> None:
    """`detbench` (or `detbench data`) alone prints its help listing every subcommand, exit 0."""
    from detbench.cli import build_parser

    parser = build_parser()
    for word in argv:
        parser = _subparsers(parser)[word]
    expected = list(_subparsers(parser))
    assert len(expected) >= 2
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert out.startswith("usage: ")
    # A long name gets its help on the next line ("    dashboard\n              one offline ...").
    listed = [w for w in expected if f"\n    {w} " in out or f"\n    {w}\n" in out]
    assert listed == expected, f"subcommands missing from the help: {set(expected) - set(listed)}\n{out}"


def test_argparse_is_used_only_in_the_cli_package() -> None:
    """Domain modules take settings objects or keyword arguments; parsing a command line is cli/'s job."""
    import ast

    import detbench

    root = Path(detbench.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.is_relative_to(root / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] == "argparse" for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


# Cases that get past the weights (a loadable untrained checkpoint) and fail further on.
LOADED_CASES = {
    "predict-corrupt-override": (
        "predict {not-an-image.jpg} --weights {weights} --artifact onnxruntime={corrupt.onnx}",
        1,
        ["corrupt.onnx"],
    ),
    "predict-not-an-image": (
        "predict {not-an-image.jpg} --weights {weights} --backend pytorch",
        1,
        ["not-an-image.jpg"],
    ),
}


@pytest.mark.parametrize("case", LOADED_CASES)
def test_bad_input_after_loading_weights_gives_one_line(
    capsys: pytest.CaptureFixture, files: dict[str, Path], untrained: Path, case: str
) -> None:
    """Bad overrides and undecodable images are refused in one line once the weights have loaded."""
    template, expected_code, fragments = LOADED_CASES[case]
    code, err = _run(capsys, _argv(template, {**files, "weights": untrained}))
    _assert_one_line(code, err, expected_code, *fragments)


class TestDebug:
    def test_debug_raises_the_typed_error(self, files: dict[str, Path]) -> None:
        """With --debug the error propagates (the traceback is the point of the flag)."""
        with pytest.raises(HistoryError, match=r"truncated\.json"):
            main(["--debug", "gate", str(files["truncated.json"]), str(files["truncated.json"])])

    def test_unexpected_exception_is_one_line_pointing_to_debug(
        self, capsys: pytest.CaptureFixture, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bug (an exception that is not about the input) is still one line, and says how to see more."""
        from detbench.cli import gate

        def broken(args):
            raise KeyError("benchmarks")

        monkeypatch.setattr(gate, "run_files", broken)
        argv = ["gate", str(files["empty.json"]), str(files["empty.json"])]
        code, err = _run(capsys, argv)
        _assert_one_line(code, err, 1, "internal error KeyError", "--debug")
        with pytest.raises(KeyError):
            main(["--debug", *argv])


# -- the installed console script, in a real process --------------------------------------------------


def _console(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    if not CONSOLE_SCRIPT.is_file():
        pytest.skip(f"console script not installed at {CONSOLE_SCRIPT}")
    env = {**os.environ, "DETBENCH_CACHE": str(tmp_path / "cache")}
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


class TestConsoleScript:
    def test_argument_error(self, tmp_path: Path) -> None:
        """`detbench data synth --train 0`: exit 2, one stderr line, nothing on stdout."""
        proc = _console("data", "synth", "--out", str(tmp_path / "s"), "--train", "0", tmp_path=tmp_path)
        _assert_one_line(proc.returncode, proc.stderr.splitlines(), 2, "--train")
        assert proc.stdout == ""

    def test_bad_file_error_and_debug_traceback(self, tmp_path: Path, files: dict[str, Path]) -> None:
        """A corrupt benchmark JSON: one line and exit 1; the same with --debug prints the traceback."""
        run = [str(files["truncated.json"]), str(files["truncated.json"])]
        proc = _console("gate", *run, tmp_path=tmp_path)
        _assert_one_line(proc.returncode, proc.stderr.splitlines(), 1, "truncated.json")
        debug = _console("--debug", "gate", *run, tmp_path=tmp_path)
        assert debug.returncode != 0
        assert "Traceback (most recent call last)" in debug.stderr
        assert "HistoryError" in debug.stderr


def test_predict_batch_lists_every_bad_file_and_finishes_the_others(
    capsys: pytest.CaptureFixture, files: dict[str, Path], untrained: Path, tmp_path: Path
) -> None:
    """predict a.jpg broken.jpg missing.jpg c.jpg: two error lines, a and c predicted, exit 1 at the end."""
    from PIL import Image

    good = []
    for name in ("a.jpg", "c.jpg"):
        Image.new("RGB", (80, 60), (120, 30, 200)).save(tmp_path / name)
        good.append(tmp_path / name)
    broken, missing = files["not-an-image.jpg"], tmp_path / "missing.jpg"
    argv = ["predict", str(good[0]), str(broken), str(missing), str(good[1]), "--weights", str(untrained)]
    code = main([*argv, "--backend", "pytorch", "--json"])
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert code == 1
    assert len(err) == 3 and all(line.startswith("detbench: error: ") for line in err), err
    assert str(broken) in err[0] and str(missing) in err[1] and "2 of 4 images" in err[2]
    results = json.loads(captured.out)
    assert [r["image"] for r in results] == [str(good[0]), str(broken), str(missing), str(good[1])]
    assert [r["detections"] is not None for r in results] == [True, False, False, True]
