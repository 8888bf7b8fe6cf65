"""``detbench ab``: A/B latency in alternated blocks, two artifacts on one backend or two Pythons."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from detbench.cli import _existing, _fail, _nonneg, _positive

if TYPE_CHECKING:
    from detbench.perf.timing import BlockPlan


def _block_plan(args: argparse.Namespace) -> BlockPlan:
    from detbench.perf.timing import BlockPlan

    if args.block_calls <= args.discard:
        message = f"ab: --block-calls ({args.block_calls}) must exceed --discard ({args.discard})"
        raise SystemExit(_fail(message, 2))
    return BlockPlan(args.blocks, args.block_calls, args.discard)


def run(args: argparse.Namespace) -> int:
    from detbench.perf import gate

    if args.envs:
        from detbench.perf.abenv import WorkerSettings, ab_environments

        weights = args.weights.resolve() if args.weights else None
        worker = WorkerSettings(backend=args.backend, weights=weights, threads=args.threads)
        verdict, info_a, info_b = ab_environments(str(args.a), str(args.b), worker, plan=_block_plan(args))
        for side, info in (("A", info_a), ("B", info_b)):
            v = info["versions"]
            print(f"{side}: torch {v['torch']}, onnxruntime {v['onnxruntime']}, openvino {v['openvino']}")
        print(gate.format_table([verdict]))
        if args.json:
            print(gate.verdicts_to_json([verdict], {**_block_plan(args).to_dict(), "a": info_a, "b": info_b}))
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
        plan=_block_plan(args),
        name=f"{args.backend}: {args.a.name} vs {args.b.name}",
    )
    print(gate.format_table([verdict]))
    if args.json:
        print(gate.verdicts_to_json([verdict], _block_plan(args).to_dict()))
    return 1 if verdict.status == "regression" else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from detbench.perf.timing import BlockPlan
    from detbench.runtimes.backends import REGISTRY

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
        default=BlockPlan.GATE.blocks,
        help=f"blocks per side ({BlockPlan.GATE.blocks})",
    )
    ab.add_argument(
        "--block-calls",
        type=_positive,
        default=BlockPlan.GATE.block_calls,
        help=f"consecutive calls per block ({BlockPlan.GATE.block_calls})",
    )
    ab.add_argument(
        "--discard",
        "--warmup",
        type=_nonneg,
        default=BlockPlan.GATE.discard,
        help=f"calls dropped at each block's start ({BlockPlan.GATE.discard})",
    )
    ab.add_argument("--threads", type=_positive, default=1)
    ab.add_argument("--json", action="store_true")
    ab.set_defaults(func=run)
