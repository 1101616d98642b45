"""Time many generators behind many backends in interleaved rounds; one tidy ``LatencyRow`` per measurement.

A *measurement* (a "cell") is one (model, backend, device, batch). How it is taken:

1. **Prepare** each (model, backend, device) once: an eval-mode copy of the generator on the device, fixed
   inputs per batch size (``generator_inputs``: seeded noise, labels 0, 1, 2, ...), then ``backend.prepare``.
   A backend that raises, or whose device it does not support, gives rows with that status and no numbers.
2. **Verify** every cell's output against the eager generator's on the same inputs: a shape that differs,
   a NaN, or a largest absolute difference over ``settings.atol`` (1e-4 by default: the images lie in
   [-1, 1], where one 8-bit grey level is 2/255 = 7.8e-3) makes the row ``mismatch``, untimed.
3. **Warm up** each cell (``warmup_calls`` calls, not recorded); their median sets the cell's calls per round:
   ``seconds_per_cell / rounds / warm-up median``, clamped to ``[min_calls_per_round, calls_per_round]``.
4. **Rounds**: round after round, every cell runs its calls in turn (``interleave``: A B C ... A B C ...), so
   that every model sees the same machine load, and a load that comes and goes hits all of them alike. In a
   round the cells go by device, batch size, backend, then model: the models of one backend and batch follow
   each other.
   Each call is timed on its own: ``time.perf_counter`` around the call, after a device synchronisation on
   CUDA (one call = one query of MLPerf's single-stream scenario: the next starts when the last finished).
   ``torch.utils.benchmark.Timer``, the suite's timer elsewhere, reports means over blocks of calls, and its
   ``timeit(1)`` runs two untimed warm-up calls around each timed one: neither gives per-call percentiles.
5. **Statistics** over all the cell's calls: p50/p90/p99 (linear interpolation), mean, ``throughput_ips =
   batch / p50``; **noise** = interquartile range of the per-round medians / their median. A cell whose noise
   exceeds ``noise_threshold`` is re-timed (all such cells together, again interleaved), at most
   ``max_retimes`` times; the attempt with the least noise is kept, and ``retimed`` counts the re-timings.
   ``noisy`` says whether the kept noise still exceeds the threshold.

Call counts: 16 rounds x 64 calls = 1,024 calls per cell by default, MLPerf's minimum single-stream query count
(which reports p90). A cell whose calls are slow gets fewer: at least 16 x 8 = 128, so that p99 lies between the
two slowest calls and not beyond the data; ``calls`` is recorded beside every percentile.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from bench.base.errors import UserError, first_line
from bench.base.io import atomic_write_text
from bench.base.layout import LATENCY_CSV
from bench.engine import preempt
from bench.engine.cpuload import OtherLoad
from bench.engine.device import device_name
from bench.latency import BACKENDS, Backend
from bench.latency.settings import SpeedSpec
from bench.metrics.measure import Inputs, generator_inputs

STATUS_OK = "ok"
STATUS_FAILED = "failed"  # prepare or a call raised
STATUS_MISMATCH = "mismatch"  # the output differs from eager PyTorch's by more than atol
STATUS_SKIPPED = "skipped"  # the backend does not run on this device

K = TypeVar("K")
_clock = time.perf_counter  # seconds; a module attribute so that tests can drive time themselves


@dataclass(frozen=True)
class LatencyRow:
    """One measurement of ``latency.csv``: a model behind one backend, on one device, at one batch size.

    Times are milliseconds per call (a call makes ``batch`` images); ``throughput_ips = batch / p50``. The
    numbers are NaN unless ``status`` is ``ok``; ``error`` then says why.
    """

    run_id: str  # the key of the models dict: the run id when timed from a results directory
    backend: str
    device: str  # cpu | cuda
    device_name: str
    batch: int
    threads: int  # torch's intra-op threads (ONNX Runtime is given as many)
    calls: int = 0  # timed calls behind the percentiles, warm-up excluded
    p50_ms: float = math.nan
    p90_ms: float = math.nan
    p99_ms: float = math.nan
    mean_ms: float = math.nan
    throughput_ips: float = math.nan
    noise: float = math.nan  # IQR of the per-round medians / their median
    noisy: bool = False  # noise still above the threshold after the re-timings
    retimed: int = 0  # re-timings spent on this cell
    max_abs_err: float = math.nan  # largest |output - eager PyTorch output|
    status: str = STATUS_OK
    error: str = ""
    other_load: float = math.nan  # cores other processes kept busy while this cell was timed (Linux /proc)
    loaded: bool = False  # other_load above a quarter of the cores: the times are inflated by the machine's load


LATENCY_COLUMNS = tuple(f.name for f in fields(LatencyRow))


def interleave(keys: Sequence[K], rounds: int) -> list[tuple[int, K]]:
    """The timing order: ``(round, key)`` for every key in every round, round by round (A B C A B C ...)."""
    return [(r, key) for r in range(rounds) for key in keys]


@dataclass(frozen=True)
class Stats:
    """Summary of one cell's per-call seconds, grouped by round."""

    calls: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    noise: float


def summarize(per_round: Sequence[Sequence[float]]) -> Stats:
    """Percentiles, mean and noise (IQR of the per-round medians / their median) of per-call seconds."""
    rounds = [np.asarray(times, dtype=np.float64) for times in per_round if len(times)]
    if not rounds:
        raise ValueError("no timed calls")
    every = np.concatenate(rounds) * 1e3
    p50, p90, p99 = np.percentile(every, [50, 90, 99])
    medians = np.array([np.median(r) for r in rounds])
    q25, q50, q75 = np.percentile(medians, [25, 50, 75])
    return Stats(
        calls=int(every.size),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(every.mean()),
        noise=float((q75 - q25) / q50) if q50 > 0 else math.inf,
    )


@dataclass
class _Cell:
    """One measurement under way: what to call, on what, and the times so far."""

    run_id: str
    backend: str
    device: torch.device
    batch: int
    order: tuple[int, int, int, int] = (0, 0, 0, 0)  # (device, batch, backend, model): its place in a round
    fn: Callable | None = None
    inputs: tuple[torch.Tensor, torch.Tensor] | None = None
    calls_per_round: int = 0
    max_abs_err: float = math.nan
    status: str = STATUS_OK
    error: str = ""
    times: list[list[float]] = field(default_factory=list)  # per round, seconds per call
    stats: Stats | None = None
    retimed: int = 0
    load: OtherLoad = field(default_factory=OtherLoad)  # other processes' load while this attempt was timed
    stats_load: OtherLoad = field(default_factory=OtherLoad)  # the same, for the attempt ``stats`` keeps

    def fail(self, status: str, error: str) -> None:
        self.status, self.error, self.fn, self.inputs = status, error, None, None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_calls(cell: _Cell, n: int) -> list[float]:
    """Seconds of each of ``n`` calls of the cell, the device synchronised after each."""
    fn, (z, labels), device = cell.fn, cell.inputs, cell.device
    times = []
    for _ in range(n):
        start = _clock()
        fn(z, labels)
        _sync(device)
        times.append(_clock() - start)
    return times


def _as_tensor(output: object) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else torch.as_tensor(np.asarray(output))


def _verify(cell: _Cell, reference: torch.Tensor, atol: float) -> None:
    """Record the cell's largest difference from eager PyTorch; a shape change, a NaN or > atol is a mismatch."""
    z, labels = cell.inputs
    out = _as_tensor(cell.fn(z, labels)).detach().to("cpu", torch.float64).clone()
    if out.shape != reference.shape:
        cell.fail(STATUS_MISMATCH, f"output shape {tuple(out.shape)}, eager PyTorch gives {tuple(reference.shape)}")
        return
    err = (out - reference).abs().max().item()
    cell.max_abs_err = err
    if not math.isfinite(err) or err > atol:
        cell.fail(STATUS_MISMATCH, f"max |{cell.backend} - eager| = {err:.3g} exceeds the tolerance {atol:g}")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(error)}"


def _backends_for(settings: SpeedSpec, device: str) -> list[tuple[Backend, bool]]:
    """(backend, runs on this device) for the settings' backends, or every backend that runs on the device."""
    if settings.backends is None:
        return [(b, True) for b in map(BACKENDS.__getitem__, BACKENDS.names()) if device in b.devices]
    return [(b, device in b.devices) for b in map(BACKENDS.__getitem__, settings.backends)]


def _skip_reason(backend: Backend, generator: nn.Module, device: str, supported: bool) -> str | None:
    """Why ``backend`` does not time ``generator`` on ``device``, or None when it does."""
    if not supported:
        return f"{backend.name} runs on {', '.join(backend.devices)} only"
    if device not in getattr(generator, "devices", (device,)):
        return f"this {generator.quantized} generator runs on {', '.join(generator.devices)} only"
    mode = getattr(generator, "quantized", None)
    if mode and (not backend.quantized or (backend.modes is not None and mode not in backend.modes)):
        return f"{backend.name} does not run post-training quantized ({mode}) generators"
    only = getattr(generator, "timed_by", None)
    if only and backend.name not in only:
        return f"this {mode} generator is timed by {', '.join(only)} only"
    return None


def _prepare_cells(
    models: dict[str, nn.Module], settings: SpeedSpec, say: Callable[[str], None]
) -> tuple[list[_Cell], list[Backend]]:
    """Every cell, prepared and verified (or marked failed/skipped/mismatch), in the rows' order."""
    cells: list[_Cell] = []
    used: dict[str, Backend] = {}
    say(f"preparing {len(models)} model(s) behind each backend, checked against eager PyTorch")
    for m, (run_id, generator) in enumerate(models.items()):
        for d, dev in enumerate(settings.devices):
            preempt.check("while timing")  # nothing timed yet is written: the next run times every model
            device = torch.device(dev)
            runs_here = dev in getattr(generator, "devices", (dev,))
            model = copy.deepcopy(generator).to(device).eval() if runs_here else generator
            inputs: Inputs = {batch: generator_inputs(model, batch, device) for batch in settings.batches}
            if runs_here:
                with torch.inference_mode():
                    references = {b: model(z, y).to("cpu", torch.float64) for b, (z, y) in inputs.items()}
            for k, (backend, supported) in enumerate(_backends_for(settings, dev)):
                row_cells = [
                    _Cell(run_id, backend.name, device, batch, order=(d, b, k, m), inputs=inputs[batch])
                    for b, batch in enumerate(settings.batches)
                ]
                cells.extend(row_cells)
                skip = _skip_reason(backend, generator, dev, supported)
                if skip:
                    for cell in row_cells:
                        cell.fail(STATUS_SKIPPED, skip)
                    continue
                used[backend.name] = backend
                try:
                    fn = backend.prepare(model, inputs)
                except Exception as err:  # a backend that cannot run this model: recorded, never fatal
                    for cell in row_cells:
                        cell.fail(STATUS_FAILED, f"prepare: {_describe(err)}")
                    continue
                with torch.inference_mode():
                    for cell in row_cells:
                        cell.fn = fn
                        try:
                            _verify(cell, references[cell.batch], settings.atol)
                        except Exception as err:
                            cell.fail(STATUS_FAILED, f"call: {_describe(err)}")
    return cells, list(used.values())


def _warm_up(cells: Iterable[_Cell], settings: SpeedSpec) -> None:
    """Warm every live cell up and set its calls per round from the warm-up's median call."""
    with torch.inference_mode():
        for cell in cells:
            preempt.check("while timing")
            if cell.fn is None:
                continue
            try:
                warm = float(np.median(_timed_calls(cell, settings.warmup_calls)))
            except Exception as err:
                cell.fail(STATUS_FAILED, f"call: {_describe(err)}")
                continue
            per_round = settings.seconds_per_cell / settings.rounds / max(warm, 1e-9)
            cell.calls_per_round = int(min(max(per_round, settings.min_calls_per_round), settings.calls_per_round))


def _time_rounds(cells: list[_Cell], settings: SpeedSpec) -> None:
    """Time the live ``cells`` in interleaved rounds; each cell's ``times`` holds this attempt's rounds.

    Within a round the models follow each other for one backend and batch size at a time, so that the cells
    compared most often (the models of one backend at one batch size) are also timed closest together.
    """
    live = sorted((cell for cell in cells if cell.fn is not None), key=lambda cell: cell.order)
    for cell in live:
        cell.times, cell.load = [], OtherLoad()
    with torch.inference_mode():
        for _, timing_round in itertools.groupby(interleave(live, settings.rounds), key=lambda pair: pair[0]):
            # the machine's load is read over a whole round (seconds: /proc counts in 10 ms ticks) and given to
            # every cell timed in it
            meter = OtherLoad()
            meter.start()
            for _, cell in timing_round:
                preempt.check("while timing")
                if cell.fn is None:  # failed in an earlier round
                    continue
                try:
                    cell.times.append(_timed_calls(cell, cell.calls_per_round))
                except Exception as err:
                    cell.fail(STATUS_FAILED, f"call: {_describe(err)}")
            meter.stop()
            for cell in live:
                cell.load.add(meter)


def _measure(cells: list[_Cell], settings: SpeedSpec, say: Callable[[str], None]) -> None:
    """Time every live cell, then re-time the noisy ones (together, interleaved), keeping the quietest attempt."""
    pending = [cell for cell in cells if cell.fn is not None]
    for attempt in range(settings.max_retimes + 1):
        if not pending:
            break
        if attempt:
            say(f"re-timing {len(pending)} noisy measurement(s), attempt {attempt} of {settings.max_retimes}")
            for cell in pending:
                cell.retimed += 1
        else:
            say(f"timing {len(pending)} measurement(s) in {settings.rounds} interleaved rounds")
        _time_rounds(pending, settings)
        for cell in pending:
            if cell.fn is None:
                continue
            stats = summarize(cell.times)
            if cell.stats is None or stats.noise < cell.stats.noise:
                cell.stats, cell.stats_load = stats, cell.load
        pending = [c for c in pending if c.fn is not None and c.stats.noise > settings.noise_threshold]


def _row(cell: _Cell, settings: SpeedSpec, names: dict[torch.device, str], threads: int) -> LatencyRow:
    base = dict(
        run_id=cell.run_id,
        backend=cell.backend,
        device=cell.device.type,
        device_name=names[cell.device],
        batch=cell.batch,
        threads=threads,
        max_abs_err=cell.max_abs_err,
        retimed=cell.retimed,
        status=cell.status,
        error=cell.error,
    )
    if cell.status != STATUS_OK or cell.stats is None:
        return LatencyRow(**base)
    s = cell.stats
    return LatencyRow(
        **base,
        calls=s.calls,
        p50_ms=s.p50_ms,
        p90_ms=s.p90_ms,
        p99_ms=s.p99_ms,
        mean_ms=s.mean_ms,
        throughput_ips=cell.batch / (s.p50_ms / 1e3),
        noise=s.noise,
        noisy=s.noise > settings.noise_threshold,
        other_load=cell.stats_load.cores,
        loaded=cell.stats_load.loaded(),
    )


def time_models(
    models: dict[str, nn.Module],
    settings: SpeedSpec | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[LatencyRow]:
    """Time every generator of ``models`` (run id -> generator) behind every backend, on every device, at every
    batch size of ``settings``, in interleaved rounds; one row per (model, backend, device, batch).

    The generators are untouched: each is copied, put in eval mode and moved to the device. A backend that
    fails on a model, a device it does not run on, or an output that differs from eager PyTorch's gives a
    row with that ``status`` and ``error`` and no numbers; the others are timed all the same.
    ``progress(message)`` is told what is being done (nothing by default).
    """
    settings = settings or SpeedSpec()
    say = progress or (lambda message: None)
    devices = {torch.device(d) for d in settings.devices}
    if any(d.type == "cuda" for d in devices) and not torch.cuda.is_available():
        raise UserError("latency on cuda was asked for, but no CUDA GPU is available")
    threads = torch.get_num_threads()
    names = {d: device_name(d) for d in devices}
    cells, used = _prepare_cells(models, settings, say)
    try:
        _warm_up(cells, settings)
        _measure(cells, settings, say)
    finally:
        for backend in used:
            if backend.cleanup is not None:
                backend.cleanup()
    return [_row(cell, settings, names, threads) for cell in cells]


def latency_csv_text(rows: Iterable[LatencyRow]) -> str:
    """``latency.csv``'s text: a header of ``LATENCY_COLUMNS`` and one line per row."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LATENCY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return buffer.getvalue()


def write_latency_csv(
    rows: Iterable[LatencyRow], results_dir: Path, filename: str = LATENCY_CSV, keep_runs: Iterable[str] = ()
) -> Path:
    """Write ``rows`` to ``results_dir/filename`` atomically; return the path.

    The file's earlier rows of the runs in ``keep_runs`` that ``rows`` does not measure again (another backend,
    device or batch size) are kept after them: a re-timing adds or replaces cells, it never loses the others."""
    rows = list(rows)
    path = Path(results_dir) / filename
    text = latency_csv_text(rows)
    kept = _kept_rows(path, {_key(asdict(row)) for row in rows}, set(keep_runs))
    atomic_write_text(path, text + "".join(kept))
    return path


def _key(row: dict) -> tuple[str, str, str, str]:
    return str(row["run_id"]), str(row["backend"]), str(row["device"]), str(int(float(row["batch"])))


def _kept_rows(path: Path, measured: set[tuple], keep_runs: set[str]) -> list[str]:
    """The lines of ``path`` (in today's columns) of runs in ``keep_runs`` whose cell is not in ``measured``."""
    if not keep_runs or not path.is_file():
        return []
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            old = [row for row in csv.DictReader(handle) if str(row.get("run_id")) in keep_runs]
        keep = [row for row in old if _key(row) not in measured]
    except (OSError, ValueError, KeyError, TypeError, csv.Error):
        return []  # a damaged file is the grid's to move aside; a re-timing then writes its own rows
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LATENCY_COLUMNS, lineterminator="\n", restval="", extrasaction="ignore")
    writer.writerows(keep)
    return [buffer.getvalue()]
