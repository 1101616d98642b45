"""results.csv's speed columns come from latency.csv: eager PyTorch as the headline, every backend beside it."""

import math

import pandas as pd
import pytest

from bench.base.layout import LATENCY_CSV
from bench.engine.records import latency_headlines


def latency_rows() -> pd.DataFrame:
    rows = []
    for run_id, scale in (("a", 1.0), ("b", 3.0)):
        for backend in ("eager", "onnxruntime", "cuda-graph"):
            for batch in (1, 16, 256):
                ok = backend != "cuda-graph"
                p50 = scale * batch * (2.0 if backend == "eager" else 1.0)
                rows.append(dict(
                    run_id=run_id, backend=backend, device="cpu", device_name="test cpu", batch=batch, threads=2,
                    p50_ms=p50 if ok else math.nan, p90_ms=1.1 * p50, p99_ms=1.5 * p50, noise=0.05 * scale,
                    throughput_ips=1000 * batch / p50 if ok else math.nan, status="ok" if ok else "skipped",
                ))  # fmt: skip
    return pd.DataFrame(rows)


def test_headlines_take_eager_at_the_extreme_batches(tmp_path):
    latency_rows().to_csv(tmp_path / LATENCY_CSV, index=False)
    speed = latency_headlines(tmp_path).set_index("run_id")
    assert speed.loc["b", "latency_ms_cpu"] == 6.0  # eager, batch 1
    assert speed.loc["b", "latency_p99_ms_cpu"] == 9.0 and speed.loc["a", "latency_noise_cpu"] == 0.05
    assert speed.loc["a", "throughput_ips_cpu"] == 1000 * 256 / (2.0 * 256)  # eager, the largest batch
    assert speed.loc["a", "latency_ms_cpu_onnxruntime"] == 1.0
    assert speed.loc["b", "throughput_ips_cpu_onnxruntime"] == 1000 * 256 / (3.0 * 256)
    assert not any("cuda_graph" in column for column in speed.columns)  # a skipped backend gives no column
    assert speed.loc["a", "device_name_cpu"] == "test cpu" and speed.loc["a", "threads_cpu"] == 2


def test_a_damaged_latency_file_is_moved_aside(tmp_path):
    (tmp_path / LATENCY_CSV).write_text("run_id,backend\nthis is not,\x00 a table\n")
    with pytest.warns(RuntimeWarning, match="latency.csv is unreadable"):
        assert latency_headlines(tmp_path).empty
    assert not (tmp_path / LATENCY_CSV).exists()
    assert latency_headlines(tmp_path).empty  # and absent is empty, not an error
