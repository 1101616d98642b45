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
from bench.base.flags import CHOICE, FLOAT, INT, INTS, PATH, STRS, SWITCH, Flag, add_flag
from bench.base.io import is_file
from bench.base.layout import DISCRIMINATOR_FILE, PRUNE, TEACHER_WIDTH
from bench.engine.cpuload import checked_threads, set_thread_budget
from bench.engine.device import DEVICE_CHOICES
from bench.engine.methods import METHODS, methods_in_order
from bench.engine.preempt import EXIT_PREEMPTED, Preempted, stop_on_sigterm
from bench.engine.spec import PRECISIONS
from bench.grid.plan import teacher_width_of
from bench.grid.presets import PRESETS, make_grid, preset_values
from bench.grid.spec import GridSpec
from bench.latency.settings import SpeedSpec
from bench.metrics.settings import QualitySpec
from gans.plugins import is_reference, load_family


def has_discriminator(teacher: str) -> bool:
    """Whether a given teacher checkpoint has its discriminator beside it (a run directory of this suite)."""
    return is_file(Path(teacher).parent / DISCRIMINATOR_FILE)


def _choices_epilog() -> str:
    """What each preset sets, and every registered objective, dataset and model family."""
    from bench.latency import backends
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


# the command line's own flags, in --help's order; each method's flags come from its registration
GRID_FLAGS = (
    Flag("--dataset", "digits (embedded, offline), mnist, fashion-mnist or cifar10"),
    Flag("--data-root", "where torchvision datasets lie (default: ./datasets)", PATH),
    Flag("--download", "fetch a missing dataset", SWITCH),
    Flag("--image-size", "28, 32 or 64: images resized to it, 64 adding an up-sampling block to every model "
         "(default: the dataset's own size; imagefolder, a folder of class folders of images: 32)", INT),
    Flag("--widths", "student widths (first-layer channels), e.g. 16,32,64 or 16 32 64", INTS),
    Flag("--family", "model family of every run (default: dcgan; the families are listed below), or one from outside "
         "the suite: FILE.py:NAME or package.module:NAME (docs/examples/resize_conv_family.py)"),
    Flag("--disc-width", "pin every student's discriminator width (default: follows)", INT),
    Flag("--kd", "objectives, e.g. none,pixel-l1 (none = from scratch)", STRS),
    Flag("--kd-weight", "weight of the distillation term (default 1)", FLOAT),
    Flag("--seeds", "seeds, e.g. 1314,1315,1316", INTS),
    Flag("--epochs", "training epochs of every run", INT),
    Flag("--batch-size", "training batch size", INT),
    Flag("--precision", "fp32 (default) or bf16 autocast training", CHOICE, choices=PRECISIONS),
    Flag("--device", "auto (default: CUDA when present), cpu or cuda", CHOICE, choices=DEVICE_CHOICES),
    Flag("--out", "results directory (default: ./results/<preset>)", PATH),
    Flag("--cache-dir", "classifier and real-data statistics cache (default: <out>/cache)", PATH),
    Flag("--teacher-width", "width of the teacher the grid trains (paper: 512, quick: 256)", INT),
    Flag("--teacher", "a trained teacher to distil from instead of training one: a generator.pt, or a run "
         "directory holding one", PATH),
    Flag("--methods", "compression methods, e.g. width,prune,quantize (default: the preset's; listed below)", STRS),
    Flag("--log-every", "log losses every N steps (default 10)", INT),
    Flag("--no-cuda-graphs", "on CUDA, train eagerly instead of replaying each step from a CUDA graph", SWITCH),
    Flag("--no-concurrency", "on CUDA, train one seed's cohort at a time and its members one after another", SWITCH),
    Flag("--samples-every-epoch", "save a sample grid after every epoch", SWITCH),
    Flag("--tensorboard", "write every run's losses, per-epoch samples and final metrics as TensorBoard events under "
         "<out>/tensorboard (needs the tensorboard extra)", SWITCH),
)  # fmt: skip
QUALITY_FLAGS = (
    Flag("--fid-samples", "generated images scored per run", INT),
    Flag("--inception-weights", "torch-fidelity's pt_inception-2015-12-05 file for Inception FID/IS", PATH),
    Flag("--inception-download", "let torch-fidelity download Inception", SWITCH),
    Flag("--clip-weights", "a state_dict of OpenAI CLIP's image encoder (e.g. ViT-B/32, saved from its TorchScript "
         "file: see bench/metrics/clip.py) for FID, KID, precision and recall on CLIP embeddings", PATH),
    Flag("--dinov2-weights", "Meta's DINOv2 ViT-S/B/L-14 weights (e.g. dinov2_vits14_pretrain.pth) for FID, KID, "
         "precision and recall on DINOv2 embeddings (bench/metrics/dinov2.py)", PATH),
    Flag("--backbones", "domain backbones the quality metrics are computed on (default: lenet,resnet; lenet alone is "
         "about 0.8 s per model faster): each is trained once per dataset and seed and cached, adds its "
         "*_<backbone> columns (FID, IS, KID, precision, recall), and two or more give the report's agreement "
         "table", STRS),
)  # fmt: skip
SPEED_FLAGS = (
    Flag("--latency-backends", "backends every model is timed behind, e.g. eager,onnxruntime,compile (default: the "
         "preset's; the list is below); docs/latency.md", STRS),
    Flag("--latency-batches", "batch sizes every model is timed at (default 1,16,256): latency at the smallest, "
         "throughput at the largest", INTS),
    Flag("--latency-seconds", "timed seconds each (model, backend, batch) aims at (quick: 0.1, paper: 1): more is "
         "steadier", FLOAT),
)  # fmt: skip
RUN_FLAGS = (
    Flag("--executor", "where the runs train: local (default, this process) or ray (one Ray task per run, "
         "docs/scale-out.md)", default="local"),
    Flag("--ray-address", "Ray cluster to join: auto, host:port or ray://host:port (default: start Ray here); needs "
         "--executor ray"),
    Flag("--gpus-per-run", "GPU share each cohort asks Ray for, 0 to 1 (default: 1 when the cluster has GPUs, else "
         "0)", FLOAT),
    Flag("--cpus-per-run", "CPUs (torch threads) per cohort under Ray (default: a fair share)", INT),
    Flag("--no-report", "skip the report at the end", SWITCH),
    Flag("--dry-run", "check every flag, file and directory, print the plan (what is done, what would be trained), "
         "touch nothing", SWITCH),
    Flag("--threads", "threads this run may use, given to torch, BLAS, ONNX Runtime and scikit-learn alike "
         "(default: the cores this process may run on)", INT),
    Flag("--quiet", "no progress bars", SWITCH),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser, built from the flag tables above and every registered method's flags."""
    p = OneLineParser(
        prog="run_bench.py",
        description="Train a teacher conditional GAN and compress its generator (narrower students with and "
        "without distillation, channel pruning with and without distillation, post-training quantization); measure "
        "size, cost, speed and quality of every model; write results.csv and a report.",
        epilog=_choices_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="quick", help=f"base settings: {', '.join(PRESETS)} (default: quick)")
    for title, flags in (("grid", GRID_FLAGS), ("quality", QUALITY_FLAGS), ("latency", SPEED_FLAGS)):
        group = p.add_argument_group(title)
        for flag in flags:
            add_flag(group, flag)
    for method in methods_in_order():
        if method.flags:
            group = p.add_argument_group(f"method {method.name}")
            for flag in method.flags:
                add_flag(group, replace(flag, field=_method_dest(method.name, flag)))
    group = p.add_argument_group("run")
    for flag in RUN_FLAGS:
        add_flag(group, flag)
    return p


def _method_dest(method: str, flag: Flag) -> str:
    return f"{method}.{flag.dest}"


def method_settings(args: argparse.Namespace) -> dict[str, dict]:
    """Method -> {settings field: value} for every method flag the user gave."""
    given: dict[str, dict] = {}
    for method in methods_in_order():
        for flag in method.flags:
            value = getattr(args, _method_dest(method.name, flag))
            if value is not None:
                given.setdefault(method.name, {})[flag.dest] = value
    return given


def quality_from_args(args: argparse.Namespace, base: QualitySpec) -> QualitySpec:
    weights = {"--inception-weights": args.inception_weights, "--clip-weights": args.clip_weights,
               "--dinov2-weights": args.dinov2_weights}  # fmt: skip
    for flag, path in weights.items():
        if path is not None and not is_file(path):
            raise UserError(f"{flag} {path}: no such file")
    return replace(
        base,
        fid_samples=base.fid_samples if args.fid_samples is None else args.fid_samples,
        inception_weights=args.inception_weights,
        inception_download=bool(args.inception_download),
        clip_weights=args.clip_weights,
        dinov2_weights=args.dinov2_weights,
        backbones=base.backbones if args.backbones is None else args.backbones,
    )


def speed_from_args(args: argparse.Namespace, base: SpeedSpec) -> SpeedSpec:
    given = {"backends": args.latency_backends, "batches": args.latency_batches,
             "seconds_per_cell": args.latency_seconds}  # fmt: skip
    return replace(base, **{name: value for name, value in given.items() if value is not None})


def teacher_from_args(args: argparse.Namespace) -> str | None:
    """``--teacher`` as a checkpoint file: a run directory stands for its ``generator.pt``."""
    teacher = args.teacher
    if teacher is not None and Path(teacher).is_dir():
        teacher = str(Path(teacher) / "generator.pt")
        if not is_file(teacher):
            raise UserError(f"--teacher {args.teacher} is a directory without generator.pt: give a run directory "
                            "or a generator.pt file")  # fmt: skip
    return teacher


def methods_from_args(args: argparse.Namespace, base: dict, teacher: str | None) -> tuple[str, ...] | None:
    """``--methods``, or the preset's without prune when a given teacher has no discriminator to fine-tune against
    (said in one warning line)."""
    methods = args.methods
    pruning_by_default = methods is None and PRUNE in base.get("methods", ())
    if pruning_by_default and teacher is not None and is_file(teacher) and not has_discriminator(teacher):
        teacher_width_of(Path(teacher), args.family or base.get("family", "dcgan"))  # a bad file: its error first
        methods = tuple(method for method in base["methods"] if method != PRUNE)
        warnings.warn(
            f"--teacher {teacher} has no discriminator beside it: the preset's prune method, which fine-tunes "
            "against the teacher's discriminator, is left out",
            UserWarning,
            stacklevel=3,
        )
    return methods


def family_name(family: str | None) -> str | None:
    """``--family`` as a registered name: a reference to a family from outside the suite is imported first."""
    return load_family(family).name if family and is_reference(family) else family


def grid_from_args(args: argparse.Namespace) -> GridSpec:
    """The preset's grid with every flag the user gave applied on top."""
    base = preset_values(args.preset)
    teacher = teacher_from_args(args)
    given = method_settings(args)
    grid = make_grid(
        args.preset,
        settings=given,
        dataset=args.dataset, data_root=args.data_root, download=args.download, image_size=args.image_size,
        widths=args.widths,
        family=family_name(args.family), family_module=args.family if is_reference(args.family or '') else None,
        disc_width=args.disc_width, kd=args.kd, kd_weight=args.kd_weight, seeds=args.seeds,
        epochs=args.epochs, batch_size=args.batch_size, precision=args.precision, device=args.device,
        out=args.out or str(Path("results") / args.preset), teacher=teacher, teacher_width=args.teacher_width,
        cache_dir=args.cache_dir, log_every=args.log_every, samples_every_epoch=args.samples_every_epoch,
        tensorboard=args.tensorboard,
        cuda_graphs=not args.no_cuda_graphs, concurrent=not args.no_concurrency,
        quality=quality_from_args(args, base["quality"]), speed=speed_from_args(args, base["speed"]),
        methods=methods_from_args(args, base, teacher),
    )  # fmt: skip
    for method, fields in given.items():
        if method not in grid.methods:
            flags = ", ".join(f.option for f in METHODS[method].flags if f.dest in fields)
            raise UserError(f"{flags} sets up the {method} method: add {method} to --methods")
    return grid


def chosen_executor(args: argparse.Namespace):
    """The ``--executor``, once it has accepted its flags' values: checked before anything starts."""
    from bench.executors import ExecutorOptions, get_executor

    executor = get_executor(args.executor)
    options = ExecutorOptions(args.ray_address, args.gpus_per_run, args.cpus_per_run)
    executor.check(options, args.device or "auto")
    return executor, options


def write_the_report(results_dir: Path) -> Path:
    """The report of ``results_dir`` (its directory), stopping between its tables and figures when a stop is asked
    for."""
    from bench.engine.preempt import check
    from reports import ReportInputError, build_report

    try:
        return build_report(results_dir, checkpoint=lambda: check("while writing the report"))
    except ReportInputError as err:
        raise UserError(f"report: {err}") from None


def execute(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """Run the grid parsed ``args`` describe, on their executor within their thread budget, then write its report
    unless ``--no-report``: returns the results and report directories. A ``UserError`` for anything wrong,
    raised before anything is written."""
    grid = grid_from_args(args)
    checked_threads(args.threads)
    executor, options = chosen_executor(args)
    set_thread_budget(args.threads)
    results_dir = executor.run(grid, options, not args.quiet)
    return results_dir, None if args.no_report else write_the_report(results_dir)


def main(argv: list[str] | None = None) -> int:
    """The command line: one ``error:`` line and exit code 2 for what the user got wrong; 143 when stopped."""
    warnings.formatwarning = one_line_warnings
    try:
        args = build_parser().parse_args(argv)
        if args.dry_run:
            from bench.grid.dryrun import dry_run

            grid = grid_from_args(args)
            checked_threads(args.threads)
            chosen_executor(args)
            print(dry_run(grid, executor=args.executor))
            return 0
        started = time.perf_counter()
        with stop_on_sigterm():  # every phase, the report included, stops at its next safe point
            results_dir, report_dir = execute(args)
        print(f"results: {results_dir / 'results.csv'} ({time.perf_counter() - started:.0f} s)")
        if report_dir is not None:
            print(f"report: {report_dir / 'report.html'}")
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
