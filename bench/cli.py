"""``run_bench.py``: parse the command line into a GridSpec, run it, write the report.

Every error a user can cause is a ``UserError``; it is caught here alone and printed as one line with exit
code 2. Results already on disk are never touched by a failed start.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

from bench.base.errors import OneLineParser, UserError, one_line_warnings, report
from bench.base.io import is_file
from bench.base.layout import PRUNE
from bench.engine.cpuload import checked_threads, set_thread_budget
from bench.engine.device import DEVICE_CHOICES
from bench.engine.preempt import EXIT_PREEMPTED, Preempted, stop_on_sigterm
from bench.engine.spec import (
    PRECISIONS,
    PRESETS,
    TEACHER_WIDTH,
    GridSpec,
    QualitySpec,
    SpeedSpec,
    has_discriminator,
    make_grid,
    preset_values,
)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(item for item in text.replace(",", " ").split())


def _path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


class _Joined(argparse.Action):
    """A list flag given as one comma-separated word or as several words (``--seeds 1 2`` = ``--seeds 1,2``).
    Every list flag refuses an empty list and a value given twice alike (a repeat is a typo, not a request)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        items = tuple(item for value in values for item in value)
        if not items:
            parser.error(f"{option_string}: give at least one value")
        repeated = list(dict.fromkeys(item for item in items if items.count(item) > 1))
        if repeated:
            parser.error(f"{option_string}: {', '.join(map(str, repeated))} given more than once")
        setattr(namespace, self.dest, items)


def _choices_epilog() -> str:
    """What each preset sets, and every registered objective, dataset and model family."""
    from bench.latency import backends
    from compress.methods import METHODS
    from data import datasets
    from distill import objectives
    from gans import families

    lines = ["presets:"]
    for name, values in PRESETS.items():
        lines.append(
            f"  {name}: {values['dataset']}, widths {','.join(map(str, values['widths']))}, teacher width "
            f"{values.get('teacher_width', TEACHER_WIDTH)}, kd {','.join(values['kd'])}, seeds "
            f"{','.join(map(str, values['seeds']))}, {values['epochs']} epochs x batch {values['batch_size']}, "
            f"{values['quality'].fid_samples} metric samples"
        )
    lines += [f"objectives (--kd): {', '.join(objectives())}", f"datasets: {', '.join(datasets())}",
              f"model families (--family): {', '.join(families())}",
              f"latency backends (--latency-backends): {', '.join(backends())}",
              "compression methods (--methods):"]  # fmt: skip
    lines += [f"  {name}: {METHODS[name].description}" for name in METHODS.names()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="run_bench.py",
        description="Train a teacher conditional GAN and compress its generator (narrower students with and "
        "without distillation, channel pruning with and without distillation, post-training quantization); measure "
        "size, cost, speed and quality of every model; write results.csv and a report.",
        epilog=_choices_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="quick", help=f"base settings: {', '.join(PRESETS)} (default: quick)")
    p.add_argument("--dataset", help="digits (embedded, offline), mnist, fashion-mnist or cifar10")
    p.add_argument("--data-root", type=_path, help="where torchvision datasets lie (default: ./datasets)")
    p.add_argument("--download", action="store_true", default=None, help="fetch a missing dataset")
    p.add_argument("--widths", type=_int_list, nargs="+", action=_Joined,
                   help="student widths (first-layer channels), e.g. 16,32,64 or 16 32 64")  # fmt: skip
    p.add_argument("--family", help="model family of every run (default: dcgan; the families are listed below)")
    p.add_argument("--disc-width", type=int, help="pin every student's discriminator width (default: follows)")
    p.add_argument("--kd", type=_str_list, nargs="+", action=_Joined,
                   help="objectives, e.g. none,pixel-l1 (none = from scratch)")  # fmt: skip
    p.add_argument("--kd-weight", type=float, help="weight of the distillation term (default 1)")
    p.add_argument("--seeds", type=_int_list, nargs="+", action=_Joined, help="seeds, e.g. 1314,1315,1316")
    p.add_argument("--epochs", type=int, help="training epochs of every run")
    p.add_argument("--batch-size", type=int, help="training batch size")
    p.add_argument("--precision", choices=PRECISIONS, help="fp32 (default) or bf16 autocast training")
    p.add_argument("--device", choices=DEVICE_CHOICES, help="auto (default: CUDA when present), cpu or cuda")
    p.add_argument("--out", type=_path, help="results directory (default: ./results/<preset>)")
    p.add_argument("--cache-dir", type=_path, help="classifier and real-data statistics cache (default: <out>/cache)")
    p.add_argument("--teacher-width", type=int, help="width of the teacher the grid trains (paper: 512, quick: 256)")
    p.add_argument("--teacher", type=_path, help="a trained teacher to distil from instead of training one: a "
                   "generator.pt, or a run directory holding one")  # fmt: skip
    p.add_argument(
        "--methods",
        type=_str_list,
        nargs="+",
        action=_Joined,
        help="compression methods, e.g. width,prune,quantize (default: the preset's; listed below)",
    )
    p.add_argument(
        "--prune-widths",
        type=_int_list,
        nargs="+",
        action=_Joined,
        help="prune: cut the teacher to the parameter count of each of these widths' generators, so "
        "pruned and narrower models compare at equal size (default: --widths below the teacher's)",
    )
    p.add_argument(
        "--prune-importance",
        type=_str_list,
        nargs="+",
        action=_Joined,
        help="prune: how channels are ranked, bn (batch-norm scale, network slimming) and/or l1 "
        "(weight magnitude); each is its own run (default: bn)",
    )
    p.add_argument(
        "--finetune-epochs",
        type=int,
        help="prune: epochs of fine-tuning after the cut, against the teacher's discriminator, with each "
        "--kd objective (none = GAN loss only) (default: the preset's)",
    )
    p.add_argument(
        "--quantize",
        type=_str_list,
        nargs="+",
        action=_Joined,
        help="quantize: post-training modes applied to every float model, among fp16,bf16,int8,openvino-int8 (int8 "
        "runs on the CPU; default: the preset's)",
    )
    p.add_argument("--fid-samples", type=int, help="generated images scored per run")
    p.add_argument("--inception-weights", type=_path,
                   help="torch-fidelity's pt_inception-2015-12-05 file for Inception FID/IS")  # fmt: skip
    p.add_argument("--inception-download", action="store_true", help="let torch-fidelity download Inception")
    p.add_argument(
        "--clip-weights",
        type=_path,
        help="a state_dict of OpenAI CLIP's image encoder (e.g. ViT-B/32, saved from its TorchScript file: see "
        "bench/metrics/clip.py) for FID, KID, precision and recall on CLIP embeddings",
    )
    p.add_argument(
        "--dinov2-weights",
        type=_path,
        help="Meta's DINOv2 ViT-S/B/L-14 weights (e.g. dinov2_vits14_pretrain.pth) for FID, KID, precision and "
        "recall on DINOv2 embeddings (bench/metrics/dinov2.py)",
    )
    p.add_argument(
        "--backbones",
        type=_str_list,
        nargs="+",
        action=_Joined,
        help="domain backbones the quality metrics are computed on (default: lenet,resnet; lenet alone is about "
        "0.8 s per model faster): each is trained once per dataset and seed and cached, adds its *_<backbone> "
        "columns (FID, IS, KID, precision, recall), and two or more give the report's agreement table",
    )
    p.add_argument(
        "--latency-backends",
        type=_str_list,
        nargs="+",
        action=_Joined,
        help="backends every model is timed behind, e.g. eager,onnxruntime,compile (default: eager, "
        "onnxruntime, and cuda-graph on a GPU; the list is below); docs/latency.md",
    )
    p.add_argument(
        "--latency-batches",
        type=_int_list,
        nargs="+",
        action=_Joined,
        help="batch sizes every model is timed at (default 1,16,256): latency at the smallest, "
        "throughput at the largest",
    )
    p.add_argument(
        "--latency-seconds",
        type=float,
        help="timed seconds each (model, backend, batch) aims at (quick: 0.1, paper: 1): more is steadier",
    )
    p.add_argument("--log-every", type=int, help="log losses every N steps (default 10)")
    p.add_argument(
        "--no-cuda-graphs",
        action="store_true",
        help="on CUDA, train eagerly instead of replaying each step from a CUDA graph",
    )
    p.add_argument(
        "--no-concurrency",
        action="store_true",
        help="on CUDA, train one seed's cohort at a time and its members one after another",
    )
    p.add_argument("--samples-every-epoch", action="store_true", help="save a sample grid after every epoch")
    p.add_argument(
        "--executor",
        default="local",
        help="where the runs train: local (default, this process) or ray (one Ray task per run, docs/scale-out.md)",
    )
    p.add_argument(
        "--ray-address",
        help="Ray cluster to join: auto, host:port or ray://host:port (default: start Ray here); needs --executor ray",
    )
    p.add_argument(
        "--gpus-per-run",
        type=float,
        help="GPU share each cohort asks Ray for, 0 to 1 (default: 1 when the cluster has GPUs, else 0)",
    )
    p.add_argument("--cpus-per-run", type=int, help="CPUs (torch threads) per cohort under Ray (default: a fair share)")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check every flag, file and directory, print the plan (what is done, what would be trained), "
        "touch nothing",
    )
    p.add_argument("--threads", type=int, help="threads this run may use, given to torch, BLAS, ONNX Runtime and "
                   "scikit-learn alike (default: the cores this process may run on)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def grid_from_args(args: argparse.Namespace) -> GridSpec:
    """The preset's grid with every flag the user gave applied on top."""
    base = preset_values(args.preset)
    quality: QualitySpec = base["quality"]
    quality = replace(
        quality,
        fid_samples=quality.fid_samples if args.fid_samples is None else args.fid_samples,
        inception_weights=args.inception_weights,
        inception_download=args.inception_download,
        clip_weights=args.clip_weights,
        dinov2_weights=args.dinov2_weights,
        backbones=quality.backbones if args.backbones is None else args.backbones,
    )
    speed: SpeedSpec = base["speed"]
    if args.latency_backends is not None:
        speed = replace(speed, backends=args.latency_backends)
    if args.latency_batches is not None:
        speed = replace(speed, batches=args.latency_batches)
    if args.latency_seconds is not None:
        speed = replace(speed, seconds_per_cell=args.latency_seconds)
    teacher = args.teacher
    if teacher is not None and Path(teacher).is_dir():
        teacher = str(Path(teacher) / "generator.pt")
        if not is_file(teacher):
            raise UserError(f"--teacher {args.teacher} is a directory without generator.pt: give a run directory "
                            "or a generator.pt file")  # fmt: skip
    weights = {"--inception-weights": args.inception_weights, "--clip-weights": args.clip_weights,
               "--dinov2-weights": args.dinov2_weights}  # fmt: skip
    for flag, path in weights.items():
        if path is not None and not is_file(path):
            raise UserError(f"{flag} {path}: no such file")
    methods = args.methods
    pruning_by_default = methods is None and PRUNE in base.get("methods", ())
    if pruning_by_default and teacher is not None and is_file(teacher) and not has_discriminator(teacher):
        from bench.engine.runner import teacher_width_of

        teacher_width_of(Path(teacher), args.family or base.get("family", "dcgan"))  # a bad file: its error first
        methods = tuple(method for method in base["methods"] if method != PRUNE)
        warnings.warn(
            f"--teacher {teacher} has no discriminator beside it: the preset's prune method, which fine-tunes "
            "against the teacher's discriminator, is left out",
            UserWarning,
            stacklevel=2,
        )
    grid = make_grid(
        args.preset,
        dataset=args.dataset, data_root=args.data_root, download=args.download, widths=args.widths,
        family=args.family, disc_width=args.disc_width, kd=args.kd, kd_weight=args.kd_weight, seeds=args.seeds,
        epochs=args.epochs, batch_size=args.batch_size, precision=args.precision, device=args.device,
        out=args.out or str(Path("results") / args.preset), teacher=teacher, teacher_width=args.teacher_width,
        cache_dir=args.cache_dir,
        log_every=args.log_every, samples_every_epoch=args.samples_every_epoch or None,
        cuda_graphs=not args.no_cuda_graphs, concurrent=not args.no_concurrency,
        quality=quality, speed=speed, methods=methods, prune_widths=args.prune_widths,
        prune_importance=args.prune_importance, finetune_epochs=args.finetune_epochs, quantize=args.quantize,
    )  # fmt: skip
    if args.prune_widths is not None and not grid.pruned_widths():
        raise UserError(f"--prune-widths {','.join(map(str, args.prune_widths))}: none is below the teacher's width "
                        f"({grid.teacher_width})")  # fmt: skip
    for flag, value, method in METHOD_FLAGS:
        if getattr(args, value) is not None and method not in grid.methods:
            raise UserError(f"{flag} sets up the {method} method: add {method} to --methods")
    return grid


# flags that only mean something with their method: (flag, argparse dest, method)
METHOD_FLAGS = (
    ("--prune-widths", "prune_widths", "prune"),
    ("--prune-importance", "prune_importance", "prune"),
    ("--finetune-epochs", "finetune_epochs", "prune"),
    ("--quantize", "quantize", "quantize"),
)


def chosen_executor(args: argparse.Namespace):
    """The ``--executor``, once it has accepted its flags' values: checked before anything starts."""
    from bench.executors import ExecutorOptions, get_executor

    executor = get_executor(args.executor)
    options = ExecutorOptions(args.ray_address, args.gpus_per_run, args.cpus_per_run)
    executor.check(options, args.device or "auto")
    return executor, options


def write_the_report(results_dir: Path) -> None:
    """The report of ``results_dir``, stopping between its tables and figures when a stop is asked for."""
    from bench.engine.preempt import check
    from reports import ReportInputError, build_report

    try:
        report_dir = build_report(results_dir, checkpoint=lambda: check("while writing the report"))
        print(f"report: {report_dir / 'report.html'}")
    except ReportInputError as err:
        raise UserError(f"report: {err}") from None


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = one_line_warnings
    try:
        args = build_parser().parse_args(argv)
        grid = grid_from_args(args)
        checked_threads(args.threads)
        executor, options = chosen_executor(args)
        from bench.engine.runner import dry_run

        if args.dry_run:
            print(dry_run(grid, executor=args.executor))
            return 0
        set_thread_budget(args.threads)
        started = time.perf_counter()
        with stop_on_sigterm():  # every phase, the report included, stops at its next safe point
            results_dir = executor.run(grid, options, not args.quiet)
            print(f"results: {results_dir / 'results.csv'} ({time.perf_counter() - started:.0f} s)")
            if not args.no_report:
                write_the_report(results_dir)
        return 0
    except (UserError, OSError) as err:  # OSError: the system refused a path (too long, a device, ...)
        return report(err)
    except Preempted as stop:
        print(f"preempted ({stop}): every run's state is saved; run the same command again to resume", file=sys.stderr)
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
