"""Run the grid on a Ray cluster: one Ray task per run (per cohort where tasks share a GPU), every result written
to a shared directory.

The driver does what a local run does first (``prepare_grid``: validate, write ``grid.json`` and the reference
rows), then submits the tasks (``task_cohorts``). A task builds its own ``GridContext`` on its worker and calls
``run_cohort``, which skips finished runs, claims the others and writes each ``result.json`` atomically, so
resume and two drivers on one directory behave exactly as locally. A task whose run needs another's model (a
distilled or pruned run its teacher, a derived model its source) takes the ObjectRef of the task that makes it as
an argument, so Ray starts it only once that model is saved; independent runs run side by side. A worker or node
lost mid-run is retried by Ray (``MAX_RETRIES``); the retry resumes from the runs' last epoch checkpoints. An
exception raised by the bench itself is not retried: it would fail the same way again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.base.errors import DataUnavailableError, UserError
from bench.engine.methods import needs, phases
from bench.engine.terminal import bars
from bench.executors import Executor, ExecutorOptions, register_executor
from bench.grid.cohorts import run_cohort
from bench.grid.context import GridContext
from bench.grid.finish import finish_grid
from bench.grid.plan import Cohort
from bench.grid.prepare import prepare_grid
from bench.grid.spec import GridSpec

RAY_MISSING = "--executor ray needs Ray: pip install '.[ray]'"
MAX_RETRIES = 3  # per cohort, for lost workers and nodes only


class RayRunError(UserError):
    """A cohort failed on the cluster for a reason outside the bench: its worker or node was lost too often."""


def run_ray(
    grid: GridSpec,
    address: str | None = None,
    gpus_per_run: float | None = None,
    progress: bool = True,
    *,
    cpus_per_run: int | None = None,
) -> Path:
    """Run the whole grid as Ray tasks, one per run (one per cohort where tasks share a GPU); returns the
    results directory.

    ``address`` None starts a Ray instance on this machine; otherwise it is the cluster to join (``auto``,
    ``host:port`` or ``ray://host:port``). ``gpus_per_run`` is the GPU share each cohort asks Ray for (0 to 1);
    None takes one GPU when the cluster has any and ``grid.device`` allows it. ``cpus_per_run`` None takes a
    fair share of a node (see ``default_cpus_per_run``). A Ray session already open in this process is used
    as it is and left open.
    """
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    check_ray_resources(gpus_per_run, cpus_per_run, grid.device)
    grid = absolute_paths(grid)  # workers start in other directories, on other machines
    started = not ray.is_initialized()
    if started:
        connect(address)
    try:
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        check_fits(nodes, cpus_per_run, gpus_per_run)
        if gpus_per_run is None:
            has_gpus = any(node.get("GPU", 0) > 0 for node in nodes)
            gpus_per_run = 1.0 if has_gpus and grid.device != "cpu" else 0.0
        if gpus_per_run == 0:
            # Ray leaves a GPU-less task every GPU of its node visible: "auto" would pile CPU runs onto GPU 0
            grid = replace(grid, device="cpu")
        ctx, specs, cohorts = prepare_grid(grid, progress)
        tasks = task_cohorts(cohorts, gpus_per_run)
        at_once = max(sum(task.phase == phase for task in tasks) for phase in phases())
        cpus = cpus_per_run or default_cpus_per_run(nodes, gpus_per_run, at_once)
        # the driver has downloaded the data already; workers must find it on shared storage, not race for it
        worker_grid = replace(grid, download=False)
        task = ray.remote(cohort_task).options(
            num_cpus=cpus, num_gpus=gpus_per_run, max_retries=MAX_RETRIES, retry_exceptions=False
        )
        refs = submit(task, worker_grid, tasks)
        wait_all(refs, progress)
        return finish_grid(ctx, specs, cohorts)
    finally:
        if started:
            ray.shutdown()


def cohort_task(grid: GridSpec, cohort: Cohort, *after: object) -> list[str]:
    """Train and record one cohort on this Ray worker; returns the ids of the runs it recorded.

    ``after`` holds the results of the cohorts this one waits for; Ray passes them once they are done.
    """
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    if cpus:  # a reused worker may have run a task of another size; OMP_NUM_THREADS is read once
        torch.set_num_threads(max(1, math.floor(cpus)))
    ctx = GridContext.create(grid, progress=False)
    return [record.run_id for record in run_cohort(ctx, cohort)]


def task_cohorts(cohorts: list[Cohort], gpus_per_run: float) -> list[Cohort]:
    """What each Ray task trains: one run each, so a grid spreads over as many GPUs (or CPU shares) as it has
    runs; but whole cohorts where tasks share a GPU (0 < ``gpus_per_run`` < 1), where training a cohort's
    runs together on one GPU (one batch stream, one teacher forward per step) is what pays."""
    if 0 < gpus_per_run < 1:
        return list(cohorts)
    return [replace(cohort, specs=(spec,)) for cohort in cohorts for spec in cohort.specs]


def submit(task, grid: GridSpec, cohorts: list[Cohort]) -> dict:
    """Submit every task; one that needs another run's model (a distilled or pruned run its teacher, a quantized
    run its float source) takes the task that makes it as an argument, so Ray starts it once that model exists (a
    given teacher checkpoint needs no wait). Ref -> cohort."""
    refs = {}
    made_by: dict[str, object] = {}  # run id -> the ref of the task that trains or derives it
    for cohort in cohorts:  # planned order: every run comes after the runs it needs
        needed = (needs(spec) for spec in cohort.specs)
        after = list(dict.fromkeys(made_by[need.run_id] for need in needed if need and need.run_id in made_by))
        ref = task.remote(grid, cohort, *after)
        made_by.update((spec.run_id, ref) for spec in cohort.specs)
        refs[ref] = cohort
    return refs


def wait_all(refs: dict, progress: bool) -> None:
    """Wait for every cohort, then raise the first failure in grid order (finished cohorts stay recorded)."""
    import ray.exceptions

    pending = dict(refs)
    failures: dict[object, BaseException] = {}
    try:
        with tqdm(total=len(refs), desc="grid", unit="task", disable=not bars(progress)) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    pending.pop(ref)
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayError as err:
                        failures[ref] = err
                    bar.update()
    except BaseException:
        for ref in pending:  # Ctrl-C: claims die with the workers, epoch checkpoints let a rerun resume
            with contextlib.suppress(Exception):  # a lost connection must not hide what stopped us
                ray.cancel(ref, force=True)
        raise
    for ref, cohort in refs.items():
        if ref in failures:
            raise failure(cohort, failures[ref])


def failure(cohort: Cohort, err: BaseException) -> BaseException:
    """What to raise for a failed cohort: the bench's own UserError as it was, a lost worker as one line."""
    import ray.exceptions

    cause = getattr(err, "cause", None)
    if isinstance(err, ray.exceptions.RayTaskError) and isinstance(cause, DataUnavailableError):
        return DataUnavailableError(f"{cause} (on a Ray worker: every node must see --data-root at the same path)")
    if isinstance(err, ray.exceptions.RayTaskError) and isinstance(cause, UserError):
        return cause
    if isinstance(err, ray.exceptions.RayTaskError) and not isinstance(cause, ray.exceptions.RayError):
        return err  # a bug in the bench: keep its traceback
    kind = type(cause if isinstance(cause, ray.exceptions.RayError) else err).__name__
    return RayRunError(
        f"{cohort.name} failed on the cluster ({kind}) after {MAX_RETRIES} retries: finished runs are kept, "
        "run the same command again to resume"
    )


def connect(address: str | None) -> None:
    """Start a Ray instance on this machine (address None) or join the cluster at ``address``, quietly."""
    import ray

    quiet = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address is None:  # "local": a new instance even where RAY_ADDRESS names a cluster
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
        return
    check_reachable(address)
    try:
        ray.init(address=address, **quiet)
    except ConnectionError as err:
        raise UserError(f"--ray-address {address}: cannot join the Ray cluster: {err}") from None


def check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``host:port`` (Ray itself retries for long)."""
    if address == "auto" or address.startswith("ray://") or address.startswith("local"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address {address}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise UserError(f"--ray-address {address}: nothing answers there ({err.strerror or err})") from None


def check_fits(nodes: list[dict], cpus_per_run: int | None, gpus_per_run: float | None) -> None:
    """A task no node of the cluster can hold would wait for ever: refused before anything starts."""
    cpus, gpus = cpus_per_run or 0, gpus_per_run or 0
    if not any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
        largest = max((f"{node.get('CPU', 0):g} CPUs, {node.get('GPU', 0):g} GPUs" for node in nodes), default="none")
        raise UserError(
            f"--cpus-per-run {cpus} and --gpus-per-run {gpus:g}: no node of the Ray cluster has that much "
            f"(largest: {largest})"
        )


def check_options(options: ExecutorOptions, device: str) -> None:
    """Every Ray flag, before anything starts (the dry run checks the same): the address's form, the shares,
    and, for a Ray started here, that one task fits this machine."""
    if options.address is not None and not options.address.strip():
        raise UserError("--ray-address is empty: give auto, host:port or ray://host:port, or leave it out")
    check_ray_resources(options.gpus_per_run, options.cpus_per_run, device)
    if options.address is None:
        local = {"CPU": os.cpu_count() or 1, "GPU": torch.cuda.device_count()}
        check_fits([local], options.cpus_per_run, options.gpus_per_run)


def check_ray_resources(gpus_per_run: float | None, cpus_per_run: int | None, device: str) -> None:
    """``--gpus-per-run`` and ``--cpus-per-run`` as given (None: not given), checked before anything starts."""
    if gpus_per_run is not None:
        if not math.isfinite(gpus_per_run):
            raise UserError(f"--gpus-per-run must be a number between 0 and 1, got {gpus_per_run}")
        check_gpus_per_run(gpus_per_run, device)
    if cpus_per_run is not None and cpus_per_run < 1:
        raise UserError(f"--cpus-per-run must be at least 1, got {cpus_per_run}")


def check_gpus_per_run(gpus: float, device: str) -> None:
    """A cohort trains on one device: a GPU share is between 0 and 1, and needs a device that may be CUDA."""
    if not 0 <= gpus <= 1:
        raise UserError(f"--gpus-per-run must be between 0 and 1 (a cohort trains on one GPU), got {gpus}")
    if gpus > 0 and device == "cpu":
        raise UserError("--gpus-per-run > 0 needs --device auto or cuda, not cpu")
    if gpus == 0 and device == "cuda":
        raise UserError("--device cuda needs --gpus-per-run > 0 under --executor ray")


def default_cpus_per_run(nodes: list[dict], gpus_per_run: float, at_once: int) -> int:
    """A fair share of a node for one task.

    With GPUs: the CPUs that go with ``gpus_per_run`` on the leanest GPU node (16 CPUs and 8 GPUs: 2 per GPU).
    Without: the cluster's CPUs split among the tasks that can run at once (``at_once``: the larger phase's
    task count), capped at the largest node (one task on a 2-core machine: both cores, like the local executor).
    """
    if gpus_per_run > 0:
        shares = [node.get("CPU", 0) / node["GPU"] for node in nodes if node.get("GPU", 0) > 0]
        return max(1, math.floor(min(shares, default=1) * gpus_per_run))
    cpus = [node.get("CPU", 0) for node in nodes]
    if not cpus:
        return 1
    return max(1, math.floor(min(max(cpus), sum(cpus) // max(at_once, 1))))


def absolute_paths(grid: GridSpec) -> GridSpec:
    """The grid with every path resolved on the driver, as every node of the cluster must see it."""
    quality = grid.quality
    if quality.inception_weights is not None:
        quality = replace(quality, inception_weights=str(Path(quality.inception_weights).resolve()))
    return replace(
        grid,
        out=str(Path(grid.out).resolve()),
        data_root=str(Path(grid.data_root).resolve()),
        teacher=None if grid.teacher is None else str(Path(grid.teacher).resolve()),
        cache_dir=None if grid.cache_dir is None else str(Path(grid.cache_dir).resolve()),
        quality=quality,
    )


register_executor(
    Executor(
        name="ray",
        run=lambda grid, options, progress: run_ray(
            grid, options.address, options.gpus_per_run, progress, cpus_per_run=options.cpus_per_run
        ),
        check=check_options,
        description="one Ray task per run, on this machine or a cluster (docs/scale-out.md)",
    )
)
