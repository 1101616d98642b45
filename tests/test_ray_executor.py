"""The grid as Ray tasks (on a local Ray instance) gives the local executor's results and survives a lost worker."""

import logging
import os
import signal
import socket
import sys

import pandas as pd
import pytest
import torch

ray = pytest.importorskip("ray")

from bench.base.errors import CheckpointError, DataUnavailableError, UserError  # noqa: E402
from bench.cli import build_parser, grid_from_args  # noqa: E402
from bench.engine.methods import needs  # noqa: E402
from bench.engine.records import results_table  # noqa: E402
from bench.executors.ray import (  # noqa: E402
    RAY_MISSING,
    RayRunError,
    absolute_paths,
    check_gpus_per_run,
    check_reachable,
    default_cpus_per_run,
    run_ray,
    submit,
    task_cohorts,
    wait_all,
)
from bench.grid.plan import Cohort, plan  # noqa: E402
from bench.grid.presets import make_grid  # noqa: E402
from tests.conftest import comparable, tiny_grid_args  # noqa: E402

KILL_REQUEST = "kill-a-worker-once"


def kill_once_after_a_checkpoint() -> None:
    """Ray worker setup hook: a worker that saves an epoch checkpoint while a kill request lies in the results
    directory takes the request and SIGKILLs itself, as if its node had gone."""
    from bench.engine.train import Member

    checkpoint = Member.checkpoint

    def checkpoint_then_die(self, epoch: int) -> None:
        checkpoint(self, epoch)
        request = self.run_dir.parent.parent / KILL_REQUEST
        try:
            request.rename(request.with_name(f"{KILL_REQUEST}.taken"))  # one worker alone wins the rename
        except FileNotFoundError:
            return
        os.kill(os.getpid(), signal.SIGKILL)

    Member.checkpoint = checkpoint_then_die


@pytest.fixture(scope="module")
def ray_instance():
    """A 2-CPU Ray instance shared by this module's tests; run_ray uses it as it is and leaves it open."""
    # the hook travels by value: workers need not import this module
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    runtime_env = {"worker_process_setup_hook": kill_once_after_a_checkpoint}
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, runtime_env=runtime_env)
    yield
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def grid_of(args: list[str]):
    return grid_from_args(build_parser().parse_args(args))


def same_results(expected, actual) -> None:
    expected = expected[expected["run_id"].isin(actual["run_id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(comparable(expected), comparable(actual))


def same_weights(a, b) -> bool:
    first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def test_ray_grid_matches_the_local_executor(ray_instance, tiny_results, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out: workers must still write to the same place
    grid = grid_of(tiny_grid_args("ray-results"))
    # one CPU, one torch thread per cohort, like the local run: results are bit-identical at equal thread counts
    assert run_ray(grid, None, 0, progress=False, cpus_per_run=1) == tmp_path / "ray-results"
    out = tmp_path / "ray-results"
    table = results_table(out)
    assert len(table) == 5 and set(table["status"]) == {"done"}
    same_results(results_table(tiny_results), table)
    assert pd.read_csv(out / "results.csv")["run_id"].tolist() == table["run_id"].tolist()
    for run in (out / "runs").iterdir():
        assert same_weights(run / "generator.pt", tiny_results / "runs" / run.name / "generator.pt")
    assert table["train_started_at"].nunique() == 5  # one task a run: the grid spreads over as many workers
    assert ray.is_initialized()  # not ours to shut down


def test_a_worker_killed_mid_run_is_retried_and_the_grid_completes(ray_instance, tiny_results, tmp_path):
    out = tmp_path / "killed"
    out.mkdir()
    (out / KILL_REQUEST).touch()
    grid = grid_of(tiny_grid_args(out, "--kd", "pixel-l1", "--widths", "16"))  # teacher, then one student
    run_ray(grid, None, 0, progress=False, cpus_per_run=1)
    assert (out / f"{KILL_REQUEST}.taken").is_file() and not (out / KILL_REQUEST).exists()  # a worker died
    table = results_table(out)
    assert len(table) == 2 and set(table["status"]) == {"done"}
    same_results(results_table(tiny_results), table)


def test_a_user_error_on_a_worker_is_raised_as_itself_and_not_retried(ray_instance, tmp_path):
    attempts = tmp_path / "attempts"

    @ray.remote(max_retries=3, retry_exceptions=False)
    def refuse(path):
        with open(path, "a") as handle:
            handle.write("x")
        raise CheckpointError("checkpoint teacher.pt is not a generator state_dict")

    cohort = Cohort(1, "scratch", ())
    with pytest.raises(CheckpointError, match="^checkpoint teacher.pt is not a generator state_dict$"):
        wait_all({refuse.remote(str(attempts)): cohort}, progress=False)
    assert attempts.read_text() == "x"

    @ray.remote(max_retries=0)
    def no_data():
        raise DataUnavailableError("dataset 'mnist' not found under --data-root /data: pass --download")

    with pytest.raises(DataUnavailableError, match="on a Ray worker: every node must see --data-root"):
        wait_all({no_data.remote(): cohort}, progress=False)


def test_a_worker_lost_for_good_is_one_line(ray_instance):
    @ray.remote(max_retries=0)
    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(RayRunError, match=r"^seed 7 distill \(0 runs\) failed on the cluster \(WorkerCrashedError\)"):
        wait_all({die.remote(): Cohort(7, "distill", ())}, progress=False)


def test_without_ray_installed_the_error_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(UserError, match=r"^--executor ray needs Ray: pip install '\.\[ray\]'$"):
        run_ray(grid_of(tiny_grid_args(tmp_path)), None, 0)
    assert RAY_MISSING == "--executor ray needs Ray: pip install '.[ray]'"


def test_gpu_shares_are_checked():
    check_gpus_per_run(0.25, "auto")
    for gpus, device in ((1.5, "auto"), (-1, "auto"), (1, "cpu"), (0, "cuda")):
        with pytest.raises(UserError):
            check_gpus_per_run(gpus, device)


def test_default_cpus_per_run_is_a_fair_share_of_a_node():
    gpu_nodes = [{"CPU": 16, "GPU": 8}, {"CPU": 32, "GPU": 8}, {"CPU": 4}]
    assert default_cpus_per_run(gpu_nodes, 1, at_once=3) == 2  # the leanest GPU node: 2 CPUs per GPU
    assert default_cpus_per_run(gpu_nodes, 0.5, at_once=3) == 1
    assert default_cpus_per_run([{"CPU": 2}], 0, at_once=1) == 2  # like the local executor
    assert default_cpus_per_run([{"CPU": 32}, {"CPU": 32}], 0, at_once=3) == 21
    assert default_cpus_per_run([{"CPU": 8}, {"CPU": 8}], 0, at_once=1) == 8  # no more than a node
    assert default_cpus_per_run([], 0, at_once=1) == 1 and default_cpus_per_run([], 1, at_once=1) == 1


def test_paths_are_resolved_on_the_driver(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = tiny_grid_args("out", "--data-root", "data", "--cache-dir", "cache", "--teacher", "t.pt")
    (tmp_path / "t.pt").touch()  # a given teacher must exist to pass validation
    grid = absolute_paths(grid_of(args))
    assert (grid.out, grid.data_root, grid.cache_dir, grid.teacher) == tuple(
        str(tmp_path / name) for name in ("out", "data", "cache", "t.pt")
    )


def test_an_address_where_nothing_listens_fails_at_once():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UserError, match=f"^--ray-address 127.0.0.1:{port}: nothing answers there"):
        check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(UserError, match="expected host:port"):
        check_reachable("head-node")
    check_reachable("auto")  # left to Ray


class RecordingTask:
    """Stands in for a Ray remote function: records each submission and what it waits for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    def remote(self, grid, cohort, *after):
        ref = f"ref{len(self.calls)}"
        self.calls.append((cohort.name if len(cohort.specs) > 1 else cohort.specs[0].run_id, list(after)))
        return ref


def test_one_task_a_run_and_each_run_waits_for_the_model_it_needs_alone():
    grid = make_grid("quick", widths=(16, 32), seeds=(1, 2))  # every method: distilled, pruned, cut, quantized
    cohorts = plan(grid.runs())
    tasks = task_cohorts(cohorts, gpus_per_run=1)
    assert len(tasks) == len(grid.runs()) and all(len(task.specs) == 1 for task in tasks)
    recorder = RecordingTask()
    refs = submit(recorder, grid, tasks)
    waits = dict(recorder.calls)
    for task in refs.values():
        spec, need = task.specs[0], needs(task.specs[0])
        needed = [ref for ref, other in refs.items() if need is not None and other.specs[0] == need]
        assert waits[spec.run_id] == needed and len(needed) == (need is not None)
    assert {task.phase for task in refs.values()} == {"scratch", "distill", "prune", "once-for-all", "quantize"}
    assert task_cohorts(cohorts, gpus_per_run=0.5) == cohorts  # tasks sharing a GPU keep whole cohorts
