"""bench/engine/cpuload.py: one thread budget for every library, and the load other processes put on the machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import prdc
import pytest
import sklearn.metrics
import torch
from threadpoolctl import threadpool_info

from bench.engine.cpuload import LOADED_SHARE, OtherLoad, cores_available, set_thread_budget, thread_budget
from bench.metrics.quality import budgeted_prdc


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    set_thread_budget(threads)


def test_the_budget_reaches_torch_and_blas(restore_threads, monkeypatch):
    assert set_thread_budget(1) == 1 == thread_budget() == torch.get_num_threads()
    assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")
    assert set_thread_budget() == 1  # OMP_NUM_THREADS=1, as the tests set it
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert set_thread_budget() == cores_available() == thread_budget()


def test_prdc_runs_within_the_budget_and_gives_prdcs_numbers(restore_threads, monkeypatch):
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 8)).astype(np.float32), rng.normal(0.5, 1, size=(50, 8)).astype(np.float32)
    expected = prdc.compute_prdc(real, fake, nearest_k=5)
    seen = []
    real_distances = sklearn.metrics.pairwise_distances
    monkeypatch.setattr(sklearn.metrics, "pairwise_distances", lambda *a, **k: seen.append(k["n_jobs"]) or
                        real_distances(*a, **k))  # fmt: skip
    set_thread_budget(1)
    with budgeted_prdc():
        scores = prdc.compute_prdc(real, fake, nearest_k=5)
    assert scores == pytest.approx(expected) and seen and set(seen) == {1}


def _measured(busy) -> float:
    meter = OtherLoad()
    meter.start()
    busy()
    meter.stop()
    return meter.cores


def _own_work() -> None:
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        pass


def test_another_process_busy_on_a_core_is_measured_and_our_own_work_is_not():
    """Relations to the machine's background load (measured first), so that a busy machine cannot fail them."""
    background = _measured(lambda: time.sleep(0.5))
    assert _measured(_own_work) < background + 0.5  # this process busy: not another process's load
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"]
    )
    time.sleep(0.3)  # the spinner started
    with_spinner = _measured(lambda: time.sleep(0.8))
    spinner.wait()
    assert with_spinner > background + 0.6  # one more core kept busy by another process (about 1.0 measured)
    meter = OtherLoad()
    meter.ticks, meter.seconds = int(os.sysconf("SC_CLK_TCK") * LOADED_SHARE * os.cpu_count() * 2), 1.0
    assert meter.loaded() and not OtherLoad().loaded()  # over a quarter of the cores; nothing measured: not
