"""Training a batch of cohorts: claim the unfinished runs, start each from its method, train them together,
measure and record each; derived cohorts are made without training (``bench.grid.derive``)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from bench.base.layout import (
    STATE_FILE,
    STATUS_DIVERGED,
    STATUS_DONE,
    STATUS_SOURCE_DIVERGED,
    STATUS_TEACHER_DIVERGED,
)
from bench.engine import claims, preempt
from bench.engine.methods import METHODS, Sources, made_from, needs, spec_columns
from bench.engine.records import (
    RunRecord,
    find_record,
    run_dir,
    write_record,
    write_results_csv,
)
from bench.engine.spec import RunSpec
from bench.engine.tensorboard import write_hparams
from bench.engine.train import (
    Member,
    TrainGroup,
    make_member,
    train_cohorts,
)
from bench.grid.context import GridContext, open_run_dir, phase
from bench.grid.derive import derive_run
from bench.grid.plan import Cohort
from bench.metrics.assess import assess
from bench.metrics.measure import size_metrics


def run_cohort(ctx: GridContext, cohort: Cohort) -> list[RunRecord]:
    """Train and measure the runs of ``cohort`` that are neither finished nor claimed by another process."""
    return run_cohorts(ctx, [cohort])


def run_cohorts(ctx: GridContext, cohorts: list[Cohort]) -> list[RunRecord]:
    """Train ``cohorts`` together (one group each, stepping in lock-step), then measure every run they trained.

    Only runs that are neither finished nor claimed by another process are trained; derived cohorts are made
    without training; cohorts whose teacher diverged are recorded as such, not trained.
    """
    held: list = []
    try:
        groups, trained, records = [], [], []
        for cohort in cohorts:
            mine = [spec for spec, _ in _claim_unfinished(ctx, cohort, held)]
            if not mine:
                continue
            if not cohort.trained:
                records += _derive_cohort(ctx, cohort, mine)
                continue
            group = _group(ctx, cohort, mine, records)
            if group is not None:
                groups.append(group)
                trained += [(cohort, member) for member in group.members]
        if groups:
            records += _train_and_measure(ctx, cohorts, groups, trained)
        if records:
            write_results_csv(ctx.results_dir)
        return records
    finally:
        for _, claim in held:
            claim.release()


def _derive_cohort(ctx: GridContext, cohort: Cohort, specs: list[RunSpec]) -> list[RunRecord]:
    records = []
    with phase(ctx.progress, f"derived and measured {len(specs)} models: {cohort.name}"):
        for spec in specs:
            records += [record] if (record := derive_run(ctx, spec)) is not None else []
            preempt.check()  # a stop asked for: the models made so far are recorded, the rest wait
    return records


def _group(ctx: GridContext, cohort: Cohort, specs: list[RunSpec], records: list[RunRecord]) -> TrainGroup | None:
    """The training group of ``cohort``'s claimed runs, each started by its method; None (each recorded as such)
    when the teacher they need diverged. A run needing another finished run (a once-for-all cut, its supernet)
    waits for it; if that diverged it is recorded as such, if it is missing it is left for a later grid run."""
    teacher = ctx.teacher_generator(cohort.teacher) if cohort.needs_teacher else None
    if cohort.needs_teacher and teacher is None:  # nothing to start from: recorded, not trained
        for spec in specs:
            records.append(RunRecord(spec, STATUS_TEACHER_DIVERGED))
            write_record(ctx.results_dir, records[-1])
        return None
    members = []
    for spec in (spec for spec in specs if _source_ready(ctx, spec, records)):
        members.append(_member(ctx, spec, teacher))  # a pruned member is cut here (its cut saved)
        preempt.check()  # a stop waits for no more cuts
    return TrainGroup(members, teacher) if members else None


def _source_ready(ctx: GridContext, spec: RunSpec, records: list[RunRecord]) -> bool:
    """Whether the run ``spec`` needs, other than the seed's teacher, has finished well (always, when it needs
    none); one that diverged gets ``spec`` recorded as ``source-diverged``."""
    needed = needs(spec)
    if needed is None or needed == spec.teacher():
        return True
    claims.wait_for(run_dir(ctx.results_dir, needed))  # another process may be training it
    found = find_record(ctx.results_dir, needed)
    if found is not None and found.status != STATUS_DONE:
        records.append(RunRecord(spec, STATUS_SOURCE_DIVERGED, {"source_run": needed.run_id}))
        write_record(ctx.results_dir, records[-1])
    return found is not None and found.status == STATUS_DONE


def _train_and_measure(
    ctx: GridContext, cohorts: list[Cohort], groups: list[TrainGroup], trained: list[tuple[Cohort, Member]]
) -> list[RunRecord]:
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    with phase(ctx.progress, f"trained {len(trained)} runs: {', '.join(c.name for c in cohorts)}"):
        window = {"train_started_at": _now()}
        train_cohorts(groups, ctx.dataset, ctx.device, ctx.loop_options())
        window["train_finished_at"] = _now()
    if ctx.device.type == "cuda":  # what the whole loop (every run in it) held on the GPU at its peak
        window["train_cuda_peak_mib"] = torch.cuda.max_memory_allocated(ctx.device) / 2**20
    records = []
    with phase(ctx.progress, f"measured {len(trained)} runs: size, quality"):
        for cohort, member in trained:
            records.append(record_member(ctx, cohort, member, window))
            preempt.check()  # a stop asked for while measuring: the rest resume from their state
    return records


def _claim_unfinished(ctx: GridContext, cohort: Cohort, held: list) -> list[tuple[RunSpec, claims.Claim]]:
    """Claim every run of ``cohort`` neither finished nor claimed by another process; each claim is added to
    ``held`` as soon as it is taken (released by the caller, whatever happens next)."""
    mine = []
    for spec in cohort.specs:
        if find_record(ctx.results_dir, spec) is not None:
            continue
        claim = claims.try_claim(run_dir(ctx.results_dir, spec))
        if claim is not None and find_record(ctx.results_dir, spec) is None:
            held.append((spec, claim))
            mine.append((spec, claim))
        elif claim is not None:
            claim.release()
    return mine


def _member(ctx: GridContext, spec: RunSpec, teacher: nn.Module | None) -> Member:
    directory = open_run_dir(ctx, spec)
    given = ctx.grid.teacher
    teacher_dir = Path(given).parent if given else run_dir(ctx.results_dir, spec.teacher())
    origin = made_from(spec)
    sources = Sources(directory, teacher, teacher_dir, run_dir(ctx.results_dir, origin) if origin else None)
    start = METHODS[spec.method].start
    return make_member(spec, directory, ctx.dataset, ctx.device, lambda: start(spec, ctx.dataset, sources))


def record_member(ctx: GridContext, cohort: Cohort, member: Member, window: dict[str, str] | None = None) -> RunRecord:
    """Measure a trained member and write its ``result.json``; a diverged one keeps its sizes only.

    ``window``: when the training loop that trained it (its whole batch of cohorts) started and finished.
    """
    last = member.last_logged()
    training = {
        **(window or {}),
        "train_seconds": member.train_seconds,
        "train_own_seconds": member.own_seconds if ctx.device.type == "cpu" else None,
        "steps": int(last["step"] or 0),
        **{f"{name}_final": value for name, value in last.items() if name.startswith("loss_")},
    }
    derived = made_from(member.spec)
    method = METHODS[member.spec.method]
    training.update({"source_run": derived.run_id} if derived else {})
    training.update(method.columns(member.run_dir, training) if method.columns else {})
    if member.active:
        teacher = ctx.teacher_generator(cohort.teacher) if cohort.teacher else None
        metrics = assess(member.generator, member.discriminator, teacher, ctx.evaluator)
        record = RunRecord(member.spec, STATUS_DONE, {**training, **metrics})
    else:
        sizes = asdict(size_metrics(member.generator, member.discriminator))  # the architecture's, still valid
        record = RunRecord(member.spec, STATUS_DIVERGED, {**training, **sizes}, diverged_step=member.diverged_step)
    if ctx.grid.tensorboard:
        write_hparams(member.run_dir, spec_columns(member.spec), record.metrics)
    write_record(ctx.results_dir, record)
    (member.run_dir / STATE_FILE).unlink(missing_ok=True)  # the optimiser state is only needed to resume
    return record


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
