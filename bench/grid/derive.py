"""Derived models (a quantized one, say): made from a finished run without training, checked against it, measured."""

from __future__ import annotations

from dataclasses import asdict

from bench.base.errors import UserError, first_line
from bench.base.layout import (
    STATUS_DONE,
    STATUS_MISMATCH,
    STATUS_SOURCE_DIVERGED,
)
from bench.engine import claims
from bench.engine.finished import checkpoint_of
from bench.engine.methods import load_generator, method_of
from bench.engine.records import (
    RunRecord,
    find_record,
    run_dir,
    write_record,
)
from bench.engine.spec import RunSpec
from bench.engine.stopwatch import timed
from bench.grid.context import GridContext, open_run_dir, say, to_device
from bench.metrics.assess import assess
from bench.metrics.measure import size_metrics
from compress.fidelity import check_against_source


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
    directory = open_run_dir(ctx, spec)
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
    to_device(model, ctx.device)
    metrics = assess(model, None, ctx.teacher_generator(spec.teacher()), ctx.evaluator)
    return RunRecord(spec, STATUS_DONE, {**known, **metrics})
