"""The grid runner: plans cohorts, trains them, measures every run and keeps ``results.csv`` current.

A grid is planned as cohorts, up to four per seed, in ``PHASES`` order: the runs trained from scratch (the
teacher among them); the distilled students, which need the finished teacher; the pruned students, cut from the
finished teacher and fine-tuned; and the quantized models, derived from every finished float model without
training. Each trained cohort trains in one process on one shared stream. Finished runs (a ``result.json``
exists) are skipped, so a killed grid resumes where it stopped; runs another process has claimed are left to it.
"""

from __future__ import annotations

import platform
import sys
import warnings
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

import gans
from bench.base.errors import DataUnavailableError, UserError, first_line
from bench.base.io import (
    atomic_write_json,
    atomic_write_text,
    check_creatable_dir,
    check_writable_dir,
    file_intact,
    file_sha256,
    move_aside,
    quarantine,
    read_json,
)
from bench.base.layout import (
    CACHE_DIR,
    GENERATOR_FILE,
    GRID_FILE,
    LATENCY_CSV,
    PRUNE,
    REFERENCES_CSV,
    RESULT_FILE,
    RUNS_DIR,
    SCRATCH,
    SPEC_FILE,
    STATE_FILE,
    STATUS_DIVERGED,
    STATUS_DONE,
    STATUS_MISMATCH,
    STATUS_SOURCE_DIVERGED,
    STATUS_TEACHER_DIVERGED,
)
from bench.engine import claims, preempt
from bench.engine.checkpoints import safe_torch_load
from bench.engine.device import device_name, resolve_device, tune_for
from bench.engine.machine import cpu_profile, profile_from
from bench.engine.records import (
    RunRecord,
    UnreadableRecordError,
    check_schema,
    directory_lock,
    find_record,
    read_record,
    run_dir,
    write_record,
    write_results_csv,
)
from bench.engine.spec import SCHEMA_VERSION, GridSpec, RunSpec, SpeedSpec
from bench.engine.stopwatch import timed
from bench.engine.terminal import bars
from bench.engine.train import (
    LoopOptions,
    Member,
    TrainGroup,
    build_models,
    make_member,
    train_cohorts,
)
from bench.latency import BACKENDS, time_models, write_latency_csv
from bench.metrics.assess import assess
from bench.metrics.measure import measure_devices, size_metrics
from bench.metrics.pretrained import resolve_pretrained, weights_paths
from bench.metrics.quality import QualityEvaluator, metric_keys
from compress.fidelity import check_against_source
from compress.methods import METHODS, Sources, load_generator, method_of
from data import DataShape, ImageDataset, get_dataset

# the phases of a seed, in the order they run: each needs what the ones before it trained
PHASES = ("scratch", "distill", "prune", "quantize")
NEEDS_TEACHER = ("distill", "prune")  # phases that start from (or distil from) the finished teacher
TRAINED = ("scratch", "distill", "prune")  # phases trained in a loop; "quantize" derives from finished runs


@dataclass(frozen=True)
class Cohort:
    """Runs of one seed and phase, trained (or derived) together; ``teacher`` is the run they distil from or are
    pruned from."""

    seed: int
    phase: str  # one of PHASES
    specs: tuple[RunSpec, ...]
    teacher: RunSpec | None = None

    @property
    def name(self) -> str:
        return f"seed {self.seed} {self.phase} ({len(self.specs)} runs)"


def phase_of(spec: RunSpec) -> str:
    if spec.quantize:
        return "quantize"
    if spec.method == PRUNE:
        return "prune"
    return "scratch" if spec.kd == SCRATCH else "distill"


def depends_on(spec: RunSpec) -> RunSpec | None:
    """The run whose finished model ``spec`` needs first: a quantized run's source, a distilled or pruned run's
    teacher; None for a run trained from scratch."""
    if spec.quantize or spec.method == PRUNE:
        return spec.derived_from()
    return spec.teacher() if spec.kd != SCRATCH else None


def plan(specs: list[RunSpec]) -> list[Cohort]:
    """Per seed, one cohort per phase that has runs, in ``PHASES`` order."""
    cohorts = []
    for seed in dict.fromkeys(spec.seed for spec in specs):
        of_seed = [spec for spec in specs if spec.seed == seed]
        teacher = of_seed[0].teacher()
        for phase in PHASES:
            chosen = tuple(spec for spec in of_seed if phase_of(spec) == phase)
            if chosen:
                cohorts.append(Cohort(seed, phase, chosen, teacher))
    return cohorts


@dataclass
class GridContext:
    """What every cohort of a grid needs, built once per process (the dataset, the device, the evaluator)."""

    grid: GridSpec
    results_dir: Path
    device: torch.device
    dataset: ImageDataset
    evaluator: QualityEvaluator
    progress: bool = True
    teachers: dict[str, nn.Module] = field(default_factory=dict)

    @classmethod
    def create(cls, grid: GridSpec, dataset: ImageDataset | None = None, progress: bool = True) -> GridContext:
        device = resolve_device(grid.device)
        tune_for(device)
        results_dir = Path(grid.out)
        dataset = dataset or get_dataset(grid.dataset, grid.data_root, grid.download)
        evaluator = QualityEvaluator(dataset, grid.quality, device, cache_dir_of(grid))
        return cls(grid, results_dir, device, dataset, evaluator, progress)

    @property
    def trains_together(self) -> bool:
        """Every seed of a phase in one training loop: on CUDA with graphs, where concurrency pays."""
        return self.device.type == "cuda" and self.grid.cuda_graphs and self.grid.concurrent

    def loop_options(self) -> LoopOptions:
        return LoopOptions(
            log_every=self.grid.log_every, samples_every_epoch=self.grid.samples_every_epoch,
            progress=bars(self.progress),
            cuda_graphs=self.grid.cuda_graphs, concurrent=self.grid.concurrent,
        )  # fmt: skip

    def teacher_generator(self, teacher: RunSpec) -> nn.Module | None:
        """The frozen teacher: a given checkpoint, or the generator the grid's teacher run saved (None if it
        diverged)."""
        if teacher.run_id not in self.teachers:
            if self.grid.teacher is not None:
                path = Path(self.grid.teacher)
            else:
                claims.wait_for(run_dir(self.results_dir, teacher))  # another process may be training it
                record = find_record(self.results_dir, teacher)
                if record is not None and record.status != STATUS_DONE:
                    return None
                path = run_dir(self.results_dir, teacher) / GENERATOR_FILE
            self.teachers[teacher.run_id] = load_generator(path, teacher, self.dataset).to(self.device).eval()
        return self.teachers[teacher.run_id]


def cache_dir_of(grid: GridSpec) -> Path:
    """Where the classifier and real-data statistics are cached: ``--cache-dir``, else ``<out>/cache``."""
    return Path(grid.cache_dir) if grid.cache_dir else Path(grid.out) / CACHE_DIR


def teacher_width_of(path: Path, family: str) -> int:
    """The width (first-layer channels) of the ``family`` generator saved at ``path``."""
    return gans.width_of(family, safe_torch_load(path), f"checkpoint {path}")


def grid_runs(grid: GridSpec) -> list[RunSpec]:
    """Every run of the grid; with a given teacher checkpoint, its width and hash enter every spec."""
    if grid.teacher is None:
        _warn_if_narrow_teacher(grid, grid.teacher_width)
        return grid.runs()
    width = gans.check_width(teacher_width_of(Path(grid.teacher), grid.family), "teacher width")
    _warn_if_narrow_teacher(grid, width)
    return grid.runs(teacher_sha=file_sha256(Path(grid.teacher))[:16], teacher_width=width)


def _warn_if_narrow_teacher(grid: GridSpec, teacher_width: int) -> None:
    wider = sorted(w for w in grid.widths if w > teacher_width)
    if wider and any(kd != SCRATCH for kd in grid.kd):
        warnings.warn(
            f"the teacher (width {teacher_width}) is narrower than the students of width "
            f"{', '.join(map(str, wider))}: they distil from a smaller generator",
            UserWarning,
            stacklevel=3,
        )


def prepare_results_dir(grid: GridSpec, device: torch.device, dataset: ImageDataset) -> Path:
    """Check the directory is ours and writable, then record the grid, the data's shape (what rebuilds a saved
    generator without the data), the device and the date."""
    results_dir = Path(grid.out)
    grid_file = results_dir / GRID_FILE
    version = checked_schema_version(grid_file)
    check_writable_dir(results_dir, "--out")
    if grid_file.is_file() and version is None:
        quarantine(grid_file, "not a grid record")
    cpu, kinds = cpu_profile(), cpu_kinds_seen(grid_file)
    atomic_write_json(
        grid_file,
        {
            **asdict(grid),
            "cpu": cpu.as_json(),
            "cpu_kinds": list(dict.fromkeys([*kinds, cpu.describe()])),
            "schema_version": SCHEMA_VERSION,
            "image_shape": list(dataset.image_shape),
            "num_classes": dataset.num_classes,
            "device": device_name(device),
            "device_type": device.type,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    )
    return results_dir


def cpu_kinds_seen(grid_file: Path) -> list[str]:
    """The CPU kinds earlier runs of this grid ran on (``grid.json``), with one warning line when the last one is
    not this machine's kind: the same seed gives other numbers on another kind."""
    try:
        raw = read_json(grid_file)
    except (OSError, ValueError):
        return []
    raw = raw if isinstance(raw, dict) else {}
    previous, current = profile_from(raw.get("cpu")), cpu_profile()
    if previous is not None and previous.kind() != current.kind():
        warnings.warn(
            f"{grid_file} was last run on another CPU kind ({previous.describe()}; this one: {current.describe()}): "
            "runs made here will differ from its runs by a few per cent in FID (see the README)",
            RuntimeWarning,
            stacklevel=2,
        )
    kinds = raw.get("cpu_kinds")
    return [str(kind) for kind in kinds] if isinstance(kinds, list) else []


def checked_schema_version(grid_file: Path) -> object | None:
    """The schema version a ``grid.json`` was written with, refused when it is another; None when the file is
    absent or unreadable."""
    try:
        raw = read_json(grid_file)
    except (OSError, ValueError):
        return None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version is not None:
        check_schema(version, grid_file)
    return version


def run_cohort(ctx: GridContext, cohort: Cohort) -> list[RunRecord]:
    """Train and measure the runs of ``cohort`` that are neither finished nor claimed by another process."""
    return run_cohorts(ctx, [cohort])


def run_cohorts(ctx: GridContext, cohorts: list[Cohort]) -> list[RunRecord]:
    """Train ``cohorts`` together (one group each, stepping in lock-step), then measure every run they trained.

    Only runs that are neither finished nor claimed by another process are trained; distilled cohorts whose
    teacher diverged are recorded as such, not trained.
    """
    held: list = []
    try:
        groups, trained, records = [], [], []
        for cohort in cohorts:
            mine = _claim_unfinished(ctx, cohort)
            held += mine
            if not mine:
                continue
            if cohort.phase not in TRAINED:
                say(ctx.progress, f"deriving and measuring {len(mine)} models: {cohort.name}")
                for spec, _ in mine:
                    records += [record] if (record := derive_run(ctx, spec)) is not None else []
                    preempt.check()  # a stop asked for: the models made so far are recorded, the rest wait
                continue
            teacher = ctx.teacher_generator(cohort.teacher) if cohort.phase in NEEDS_TEACHER else None
            if cohort.phase in NEEDS_TEACHER and teacher is None:  # nothing to start from: recorded, not trained
                for spec, _ in mine:
                    records.append(RunRecord(spec, STATUS_TEACHER_DIVERGED))
                    write_record(ctx.results_dir, records[-1])
                continue
            members = []
            for spec, _ in mine:  # a pruned member is cut here (its cut saved): a stop waits for no more cuts
                members.append(_member(ctx, spec, teacher))
                preempt.check()
            groups.append(TrainGroup(members, teacher))
            trained += [(cohort, member) for member in members]
        if groups:
            say(ctx.progress, f"training {len(trained)} runs: {', '.join(c.name for c in cohorts)}")
            if ctx.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(ctx.device)
            window = {"train_started_at": _now()}
            train_cohorts(groups, ctx.dataset, ctx.device, ctx.loop_options())
            window["train_finished_at"] = _now()
            if ctx.device.type == "cuda":  # what the whole loop (every run in it) held on the GPU at its peak
                window["train_cuda_peak_mib"] = torch.cuda.max_memory_allocated(ctx.device) / 2**20
            say(ctx.progress, f"measuring {len(trained)} runs: size, speed, quality")
            for cohort, member in trained:
                records.append(record_member(ctx, cohort, member, window))
                preempt.check()  # a stop asked for while measuring: the rest resume from their state
        if records:
            write_results_csv(ctx.results_dir)
        return records
    finally:
        for _, claim in held:
            claim.release()


def _claim_unfinished(ctx: GridContext, cohort: Cohort) -> list[tuple[RunSpec, claims.Claim]]:
    held = []
    for spec in cohort.specs:
        if find_record(ctx.results_dir, spec) is not None:
            continue
        claim = claims.try_claim(run_dir(ctx.results_dir, spec))
        if claim is not None and find_record(ctx.results_dir, spec) is None:
            held.append((spec, claim))
        elif claim is not None:
            claim.release()
    return held


def _open_run_dir(ctx: GridContext, spec: RunSpec) -> Path:
    """The claimed run's directory, cleared of half-written files and holding its ``spec.json``."""
    directory = run_dir(ctx.results_dir, spec)
    for orphan in directory.glob(".*.tmp"):  # left by a process killed mid-write; the claim is ours now
        orphan.unlink()
    atomic_write_json(directory / SPEC_FILE, {"run_id": spec.run_id, **asdict(spec)})
    return directory


def _member(ctx: GridContext, spec: RunSpec, teacher: nn.Module | None) -> Member:
    directory = _open_run_dir(ctx, spec)
    given = ctx.grid.teacher
    teacher_dir = Path(given).parent if given else run_dir(ctx.results_dir, spec.teacher())
    sources = Sources(directory, teacher, teacher_dir)
    start = METHODS[spec.method].start
    return make_member(spec, directory, ctx.dataset, ctx.device, lambda: start(spec, ctx.dataset, sources))


def derive_run(ctx: GridContext, spec: RunSpec) -> RunRecord | None:
    """Make ``spec``'s model from its finished source run (no training), check it against its source, measure it
    and write its record.

    A source that diverged gives a record saying so; one that has not finished gives none (a later grid run
    derives it). A model beyond its method's tolerance of its source, or one its method refuses to make on this
    machine, is recorded as a ``mismatch`` with the reason, and is not scored."""
    source = spec.source()
    claims.wait_for(run_dir(ctx.results_dir, source))
    found = find_record(ctx.results_dir, source)
    if found is None:
        return None
    if found.status != STATUS_DONE:
        record = RunRecord(spec, STATUS_SOURCE_DIVERGED, {"source_run": source.run_id})
    else:
        record = _derived_record(ctx, spec, found)
    write_record(ctx.results_dir, record)
    return record


def _derived_record(ctx: GridContext, spec: RunSpec, source: RunRecord) -> RunRecord:
    directory = _open_run_dir(ctx, spec)
    method = method_of(spec)
    float_generator = load_generator(checkpoint_of(ctx.results_dir, source), source.spec, ctx.dataset).eval()
    known = {"source_run": source.run_id, **asdict(size_metrics(float_generator))}  # parameters, MACs: the float's
    seconds: dict[str, float] = {}
    try:
        with timed(seconds, "derive"):
            model, columns = method.derive(float_generator, spec, directory)
    except UserError as err:  # the method cannot make this model correctly here (no correct int8 kernel, say)
        return RunRecord(spec, STATUS_MISMATCH, {**known, "mismatch_reason": first_line(err)})
    check = check_against_source(model, float_generator, method.tolerance(spec))
    known.update({**columns, **check.columns(), "seconds_derive": seconds["derive"]})
    if not check.ok:
        say(ctx.progress, f"{spec.run_id}: mismatch, {check.reason}")
        return RunRecord(spec, STATUS_MISMATCH, {**known, "mismatch_reason": check.reason})
    _to_device(model, ctx.device)
    metrics = assess(model, None, ctx.teacher_generator(spec.teacher()), ctx.evaluator)
    return RunRecord(spec, STATUS_DONE, {**known, **metrics})


def _to_device(generator: nn.Module, device: torch.device) -> None:
    """Move ``generator`` to the grid's device where it runs there; an int8 model stays on the CPU."""
    if device.type in generator.devices:
        generator.to(device)


def schedule(cohorts: list[Cohort], together: bool) -> list[list[Cohort]]:
    """Batches of cohorts run at once: every seed's cohort of a phase, phase after phase (``together``), or one
    cohort at a time."""
    if not together:
        return [[cohort] for cohort in cohorts]
    phases = [[cohort for cohort in cohorts if cohort.phase == phase] for phase in PHASES]
    return [phase for phase in phases if phase]


def say(progress: bool, text: str) -> None:
    """One line of progress on stderr, beside the bars (nothing under ``--quiet``)."""
    if progress:
        tqdm.write(text, file=sys.stderr)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def record_member(ctx: GridContext, cohort: Cohort, member: Member, window: dict[str, str] | None = None) -> RunRecord:
    """Measure a trained member and write its ``result.json``; a diverged one keeps its sizes only.

    ``window``: when the training loop that trained it (its whole batch of cohorts) started and finished.
    """
    last = member.last_logged()
    training = {
        **(window or {}),
        "train_seconds": member.train_seconds,
        "steps": int(last["step"] or 0),
        **{f"{name}_final": value for name, value in last.items() if name.startswith("loss_")},
    }
    derived = member.spec.derived_from()
    method = METHODS[member.spec.method]
    training.update({"source_run": derived.run_id} if derived else {})
    training.update(method.columns(member.run_dir) if method.columns else {})
    if member.active:
        teacher = ctx.teacher_generator(cohort.teacher) if cohort.teacher else None
        metrics = assess(member.generator, member.discriminator, teacher, ctx.evaluator)
        record = RunRecord(member.spec, STATUS_DONE, {**training, **metrics})
    else:
        sizes = asdict(size_metrics(member.generator, member.discriminator))  # the architecture's, still valid
        record = RunRecord(member.spec, STATUS_DIVERGED, {**training, **sizes}, diverged_step=member.diverged_step)
    write_record(ctx.results_dir, record)
    (member.run_dir / STATE_FILE).unlink(missing_ok=True)  # the optimiser state is only needed to resume
    return record


TRAINING_FIELDS = ("epochs", "batch_size", "lr", "beta1", "beta2", "precision")


def as_trained(teacher: RunSpec, checkpoint: Path) -> RunSpec:
    """The given teacher's spec with how it was trained (epochs, batch size, optimiser, precision), read from the
    ``spec.json`` beside its checkpoint when it came from a run of this suite; unchanged otherwise. The seed
    stays the grid's: the teacher's record is what the grid's students are compared against."""
    try:
        trained = read_json(Path(checkpoint).parent / SPEC_FILE)
        values = {name: type(getattr(teacher, name))(trained[name]) for name in TRAINING_FIELDS}
    except (OSError, ValueError, KeyError, TypeError):
        return teacher
    if trained.get("width") != teacher.width:  # a spec.json that does not describe this generator
        return teacher
    return replace(teacher, **values)


def record_given_teacher(ctx: GridContext, teacher: RunSpec) -> None:
    """Measure a teacher given as a checkpoint, so ratios against it can be computed like any other."""
    teacher = as_trained(teacher, Path(ctx.grid.teacher))
    if find_record(ctx.results_dir, teacher) is not None:
        return
    generator = ctx.teacher_generator(teacher)
    _, discriminator = build_models(teacher, ctx.dataset)  # sizes depend on the architecture alone
    # scored against itself, as a trained teacher is: its teacher L1 is 0, not missing
    metrics = assess(generator, discriminator, generator, ctx.evaluator)
    write_record(ctx.results_dir, RunRecord(teacher, STATUS_DONE, {"given_checkpoint": ctx.grid.teacher, **metrics}))


def write_references(ctx: GridContext) -> None:
    """The real-data floor and the untrained-generator ceiling of every metric, once per results directory, and
    again (overwritten) when the rows on disk lack a metric the grid scores or were scored on another number of
    samples."""
    path = ctx.results_dir / REFERENCES_CSV
    if path.is_file():
        try:
            frame = pd.read_csv(path)
            if not {"dataset", "reference", "quality_n_fake"} <= set(frame.columns) or len(frame) < 2:
                raise ValueError("not the reference rows")
        except (OSError, ValueError, pd.errors.ParserError) as err:
            quarantine(path, f"{type(err).__name__}: {first_line(err)}")
        else:
            untrained_samples = list(frame.loc[frame["reference"] == "untrained", "quality_n_fake"])
            every_metric = set(ctx.evaluator.metric_keys) <= set(frame.columns)
            if every_metric and untrained_samples == [ctx.grid.quality.fid_samples]:
                return
    untrained, _ = build_models(ctx.grid.runs()[0], ctx.dataset)
    rows = [{"dataset": ctx.grid.dataset, **row} for row in ctx.evaluator.reference_rows(untrained.to(ctx.device))]
    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False))


def check_weights_files(grid: GridSpec) -> None:
    """A weights file that is missing, unsafe or does not fit its network fails here, before anything is written
    or trained (the evaluator checks them again when it is built: the check is cheap next to a grid)."""
    if any(weights_paths(grid.quality).values()):
        resolve_pretrained(grid.quality)


def check_grid(grid: GridSpec) -> tuple[torch.device, list[RunSpec]]:
    """Everything a user can get wrong about ``grid`` but its data, checked before anything is written: the run
    and the dry run call this one function, so they refuse the same things. Returns the device and the runs."""
    device = resolve_device(grid.device)
    specs = grid_runs(grid)
    check_backends_run_here(grid.speed, device)
    check_weights_files(grid)
    check_creatable_dir(Path(grid.out), "--out")
    checked_schema_version(Path(grid.out) / GRID_FILE)
    check_creatable_dir(cache_dir_of(grid), "--cache-dir")
    return device, specs


def check_backends_run_here(speed: SpeedSpec, device: torch.device) -> None:
    """A latency backend asked for by name that runs on none of the devices this machine times on is refused
    (asked for, it would give nothing but ``skipped`` rows)."""
    here = {measured.type for measured in measure_devices(device)}
    for name in speed.backends or ():
        backend = BACKENDS[name]
        if not set(backend.devices) & here:
            raise UserError(
                f"--latency-backends {name} runs on {', '.join(backend.devices)} only, and this machine times on "
                f"{', '.join(sorted(here))}"
            )


def prepare_grid(grid: GridSpec, progress: bool = True) -> tuple[GridContext, list[RunSpec], list[Cohort]]:
    """Validate, record the grid, write the reference rows; returns what any executor needs to run cohorts."""
    # everything a user can get wrong is checked before the results directory is touched
    device, specs = check_grid(grid)
    dataset = get_dataset(grid.dataset, grid.data_root, grid.download)
    check_writable_dir(cache_dir_of(grid), "--cache-dir")  # created for real: a root user's access checks pass
    prepare_results_dir(grid, device, dataset)
    say(progress, "preparing: the domain classifier, the real-data statistics and the reference rows")
    ctx = GridContext.create(grid, dataset, progress)
    write_references(ctx)
    cohorts = plan(specs)
    heal_finished_runs(ctx.results_dir, specs)
    finished = sum(find_record(ctx.results_dir, spec) is not None for spec in specs)
    if finished:
        say(progress, f"{finished} of {len(specs)} runs already finished, skipped")
    if grid.teacher is not None:
        for teacher in {cohort.teacher.run_id: cohort.teacher for cohort in cohorts}.values():
            record_given_teacher(ctx, teacher)
    return ctx, specs, cohorts


def damaged_files(results_dir: Path, record: RunRecord) -> list[str]:
    """The files a finished run's generator is rebuilt from that are missing, empty or truncated."""
    if record.status != STATUS_DONE or record.metrics.get("given_checkpoint"):
        return []
    directory = run_dir(results_dir, record.spec)
    damaged = [name for name in method_of(record.spec).files(record.spec) if not file_intact(directory / name)]
    source = record.spec.source() if record.spec.quantize else None  # a quantized model is rebuilt on its source
    if source is not None:
        source_dir = run_dir(results_dir, source)
        files = method_of(source).files(source)
        damaged += [f"its source's {name}" for name in files if not file_intact(source_dir / name)]
    return damaged


def heal_finished_runs(results_dir: Path, specs: list[RunSpec]) -> list[str]:
    """Make unfinished every finished run whose files are damaged, and every run derived from one of them: one
    warning line each, their record and damaged files moved aside, so the grid makes them (and only them) again.
    Returns their run ids."""
    remade: list[str] = []
    for spec in sorted(specs, key=lambda spec: PHASES.index(phase_of(spec))):  # sources before what they made
        record = find_record(results_dir, spec)
        if record is None:
            continue
        damaged = damaged_files(results_dir, record)
        source = spec.derived_from() if spec.quantize else None
        if not damaged and (source is None or source.run_id not in remade):
            continue
        directory = run_dir(results_dir, spec)
        for name in damaged:
            move_aside(directory / name)  # a source's damaged file is moved aside when the source is healed
        move_aside(directory / RESULT_FILE)
        why = f"{', '.join(damaged)} missing or truncated" if damaged else "its source run is made again"
        warnings.warn(f"run {spec.run_id}: {why}; its record and files moved aside, made again", RuntimeWarning,
                      stacklevel=2)  # fmt: skip
        remade.append(spec.run_id)
    return remade


def dry_run(grid: GridSpec, executor: str = "local") -> str:
    """Check what a run of ``grid`` needs (device, teacher, dataset, directories) and describe what it would do:
    every cohort's runs, which are finished, which resume, which would be trained. Nothing is written."""
    device, specs = check_grid(grid)
    try:
        get_dataset(grid.dataset, grid.data_root, download=False)
        data = f"{grid.dataset} (on disk)"
    except DataUnavailableError:
        if not grid.download:
            raise
        check_creatable_dir(Path(grid.data_root), "--data-root")
        data = f"{grid.dataset} (would be downloaded to {grid.data_root})"
    results_dir = Path(grid.out)
    cohorts = plan(specs)
    lines = [
        f"dry run: {len(specs)} runs in {len(cohorts)} cohorts; {data}; device {device_name(device)}; "
        f"executor {executor}; results in {results_dir}",
    ]
    counts = {"finished": 0, "to train": 0}
    for cohort in cohorts:
        lines.append(f"{cohort.name}:")
        for spec in cohort.specs:
            state = _run_state(grid, spec)
            counts["to train" if state.startswith("to train") else "finished"] += 1
            lines.append(f"  {spec.run_id:56s} {spec.describe():18s} width {spec.width:3d} {spec.kd:10s} {state}")
    lines.append(f"{counts['finished']} finished, {counts['to train']} to train; nothing was written")
    return "\n".join(lines)


def _run_state(grid: GridSpec, spec: RunSpec) -> str:
    results_dir = Path(grid.out)
    directory = run_dir(results_dir, spec)
    record = find_record(results_dir, spec, heal=False)
    if record is not None:
        lacking = lacking_columns(record, grid) if record.status == STATUS_DONE else []
        return f"finished (to be scored on {len(lacking)} columns it lacks)" if lacking else "finished"
    if (directory / RESULT_FILE).is_file():
        return "to train (its result.json is unreadable and would be moved aside)"
    if (directory / STATE_FILE).is_file():
        return "to train (resumes from its checkpoint)"
    return "to train"


def finish_grid(ctx: GridContext, specs: list[RunSpec], cohorts: list[Cohort]) -> Path:
    """Wait for runs another process holds, take over any it left unfinished, time every model together, then
    rebuild the CSV."""
    for spec in specs:
        if find_record(ctx.results_dir, spec) is None:
            claims.wait_for(run_dir(ctx.results_dir, spec))
    for cohort in cohorts:
        run_cohort(ctx, cohort)
    with directory_lock(ctx.results_dir):  # two processes finishing one grid score and time it once
        score_missing_metrics(ctx)
        time_latency(ctx)
    write_results_csv(ctx.results_dir)
    return ctx.results_dir


def finished_records(results_dir: Path) -> list[RunRecord]:
    """Every record of ``results_dir`` whose run finished (status done); a ``result.json`` that cannot be read is
    left out (the grid run that finds it recomputes it)."""
    finished = []
    for path in sorted((Path(results_dir) / RUNS_DIR).glob(f"*/{RESULT_FILE}")):
        try:
            record = read_record(path)
        except UnreadableRecordError:
            continue
        if record.status == STATUS_DONE:
            finished.append(record)
    return finished


def finished_checkpoints(results_dir: Path) -> dict[str, tuple[RunSpec, Path]]:
    """Run id -> (spec, generator checkpoint), for every run of ``results_dir`` that finished (status done) and
    still has its files; one whose files are damaged is left out with one warning line (a grid run makes it
    again)."""
    checkpoints = {}
    for record in finished_records(results_dir):
        damaged = damaged_files(results_dir, record)
        if damaged:
            warnings.warn(f"run {record.run_id}: {', '.join(damaged)} missing or truncated: left out (run the grid "
                          "again to make it again)", RuntimeWarning, stacklevel=2)  # fmt: skip
            continue
        checkpoints[record.run_id] = (record.spec, checkpoint_of(results_dir, record))
    return checkpoints


def score_missing_metrics(ctx: GridContext) -> None:
    """Score every finished run whose record lacks a quality column this grid writes (a backbone or a weights
    file added to a finished grid) on those columns alone, from its saved generator: nothing is retrained, and
    every number the record already holds is kept."""
    records = finished_records(ctx.results_dir)
    lacking = {record.run_id: lacking_columns(record, ctx.grid) for record in records}
    stale = [record for record in records if lacking[record.run_id]]
    if stale:
        columns = sorted({key for record in stale for key in lacking[record.run_id]})
        say(ctx.progress, f"scoring {len(stale)} finished runs on the columns they lack: {', '.join(columns)}")
    for record in stale:
        generator = load_generator(checkpoint_of(ctx.results_dir, record), record.spec, ctx.dataset).eval()
        _to_device(generator, ctx.device)
        seconds: dict[str, float] = {}
        scores = ctx.evaluator.score_generator(generator, seconds=seconds)
        added = {key: scores[key] for key in lacking[record.run_id]}
        added.update(
            {f"seconds_{part}": value for part, value in seconds.items() if f"seconds_{part}" not in record.metrics}
        )
        write_record(ctx.results_dir, replace(record, metrics={**record.metrics, **added}))


def lacking_columns(record: RunRecord, grid: GridSpec) -> list[str]:
    """The quality columns ``grid`` scores that a finished ``record`` does not hold."""
    return [key for key in metric_keys(grid.quality) if key not in record.metrics]


def checkpoint_of(results_dir: Path, record: RunRecord) -> Path:
    """Where a finished run's generator is: a given teacher's checkpoint, else its run's ``generator.pt``."""
    given = record.metrics.get("given_checkpoint")
    return Path(given) if given else run_dir(results_dir, record.spec) / GENERATOR_FILE


def load_checkpoints(finished: dict[str, tuple[RunSpec, Path]], data: ImageDataset | DataShape) -> dict[str, nn.Module]:
    """Run id -> generator (eval mode), for the ``finished_checkpoints`` given."""
    return {run_id: load_generator(checkpoint, spec, data).eval() for run_id, (spec, checkpoint) in finished.items()}


def finished_generators(results_dir: Path, data: ImageDataset | DataShape) -> dict[str, nn.Module]:
    """Run id -> generator (eval mode), for every run of ``results_dir`` that finished (status done)."""
    return load_checkpoints(finished_checkpoints(results_dir), data)


def latency_is_current(results_dir: Path, finished: dict[str, tuple[RunSpec, Path]], settings: SpeedSpec) -> bool:
    """Whether ``latency.csv`` holds exactly these runs, timed behind these backends, devices and batch sizes, and
    was written after every one of their generator files (a model made again since is timed again)."""
    path = Path(results_dir) / LATENCY_CSV
    try:
        timed = pd.read_csv(path)
        if timed.empty or not {"run_id", "backend", "device", "batch", "p50_ms", "status"} <= set(timed.columns):
            raise ValueError("not the rows of a timing")
        newest_model = max(_saved_at(results_dir, spec, checkpoint) for spec, checkpoint in finished.values())
        return (  # every cell the grid times is there (others, added by python -m bench.latency, may be too)
            set(timed["run_id"].astype(str)) == set(finished)
            and (settings.backends is None or set(settings.backends) <= set(timed["backend"]))
            and set(settings.devices) <= set(timed["device"])
            and set(settings.batches) <= set(timed["batch"].astype(int))
            and path.stat().st_mtime >= newest_model
        )
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as err:  # damaged: moved aside, timed afresh
        if path.is_file():
            quarantine(path, f"{type(err).__name__}: {first_line(err)}")
        return False


def _saved_at(results_dir: Path, spec: RunSpec, checkpoint: Path) -> float:
    """When a finished model was last written: a given checkpoint's time, else that of the newest file its method
    rebuilds it from (an openvino-int8 model has no generator.pt: its IR files)."""
    if checkpoint.parent != run_dir(results_dir, spec):
        return checkpoint.stat().st_mtime
    return max((checkpoint.parent / name).stat().st_mtime for name in method_of(spec).files(spec))


def time_latency(ctx: GridContext) -> None:
    """Time every finished generator of the grid together into ``latency.csv``: in interleaved rounds, so every
    model sees the same machine load (docs/latency.md). Skipped when the file already holds these very runs."""
    devices = tuple(device.type for device in measure_devices(ctx.device))
    settings = replace(ctx.grid.speed, devices=devices)
    finished = finished_checkpoints(ctx.results_dir)  # a rerun of a timed grid loads no checkpoint
    if not finished or latency_is_current(ctx.results_dir, finished, settings):
        return
    models = load_checkpoints(finished, ctx.dataset)
    say(ctx.progress, f"timing {len(models)} models together on {', '.join(devices)} (latency.csv)")
    rows = time_models(models, settings, progress=lambda message: say(ctx.progress, f"  {message}"))
    write_latency_csv(rows, ctx.results_dir, keep_runs=models)  # cells re-timed by python -m bench.latency stay
