"""What a deployment engineer asks of a grid: per model, the fastest way to run it on this CPU, and which
quantized model is faster than its float model rather than only smaller.

Read from latency.csv's timed rows (status ok) on the CPU: per run, the backend with the lowest p50 at the
smallest batch (latency) and at the largest (throughput); per model, the median over its seeds.
"""

from __future__ import annotations

import pandas as pd

from reports.load import Results, in_report_order
from reports.tables import ABSENT, GROUP, Table, key_columns, register_table
from reports.timing import FLAGS, flag_columns, flag_note, mark, noise_threshold

FASTER = 1.1  # a quantized model is "faster" when its best p50 beats its float source's best by 10% or more


def _fastest(timed: pd.DataFrame, batch: int) -> pd.DataFrame:
    """Per run: the backend with the lowest p50 at ``batch``, that p50, and whether latency.csv flags that timing
    (a boolean column per flag: noisy, loaded)."""
    rows = timed[timed["batch"] == batch].sort_values("p50_ms", kind="stable")
    rows = rows.assign(**flag_columns(rows))
    return rows.groupby("run_id", sort=False).head(1).set_index("run_id")[["backend", "p50_ms", *FLAGS]]


def _per_run(results: Results) -> pd.DataFrame | None:
    latency = results.latency
    if latency.empty or "device" not in latency:
        return None
    timed = latency[latency["device"] == "cpu"]
    if timed.empty:
        return None
    first, last = int(timed["batch"].min()), int(timed["batch"].max())
    small, large = _fastest(timed, first), _fastest(timed, last)
    runs = results.runs.set_index("run_id")
    frame = runs.loc[runs.index.intersection(small.index)].copy()
    for suffix, fastest in (("1", small), ("n", large)):
        frame[f"fast_backend_{suffix}"], frame[f"fast_ms_{suffix}"] = fastest["backend"], fastest["p50_ms"]
        for flag in FLAGS:
            frame[f"{flag}_{suffix}"] = fastest[flag].reindex(frame.index).eq(True)
    source = frame["source_run"].where(frame["quantize"] != "", "")
    for column in ("fast_ms_1", "fast_ms_n"):
        frame[f"source_{column}"] = source.map(frame[column])
    frame.attrs["batches"] = (first, last)
    return frame.reset_index()


def _verdict(row: pd.Series) -> str:
    if not row["quantize"]:
        return ""
    speedups = [row[f"source_{c}"] / row[c] for c in ("fast_ms_1", "fast_ms_n") if pd.notna(row[f"source_{c}"])]
    if not speedups:
        return ABSENT
    best = max(speedups)
    return f"faster ({best:.2f}x)" if best >= FASTER else f"only smaller ({best:.2f}x)"


@register_table("deployment")
def deployment_table(results: Results) -> Table | None:
    """Per model: its fastest backend and precision on the CPU at the smallest and the largest batch, and for a
    quantized model whether it is faster than its float source behind its own fastest backend."""
    frame = _per_run(results)
    if frame is None or frame.empty:
        return None
    first, last = frame.attrs["batches"]
    mode = lambda values: values.mode().iloc[0]  # noqa: E731  the backend most seeds found fastest
    data = frame.groupby(GROUP + ["method_label", "objective", "series"], sort=False).agg(
        fast_backend_1=("fast_backend_1", mode), fast_ms_1=("fast_ms_1", "median"),
        fast_backend_n=("fast_backend_n", mode), fast_ms_n=("fast_ms_n", "median"),
        source_fast_ms_1=("source_fast_ms_1", "median"), source_fast_ms_n=("source_fast_ms_n", "median"),
        **{f"{flag}_{n}": (f"{flag}_{n}", "any") for flag in FLAGS for n in ("1", "n")},
    ).reset_index()  # fmt: skip
    data = in_report_order(data)
    data["precision"] = data["quantize"].where(data["quantize"] != "", "fp32")
    data["verdict"] = [_verdict(row) for _, row in data.iterrows()]
    display = key_columns(results, data, {"dataset": "dataset", "method_label": "method", "width": "width",
                                          "objective": "objective"})  # fmt: skip
    display["precision"] = data["precision"]
    latency = [f"{b}, {ms:.3g} ms" for b, ms in zip(data.fast_backend_1, data.fast_ms_1, strict=True)]
    throughput = [
        f"{b}, {last / ms * 1e3:,.0f} img/s" for b, ms in zip(data.fast_backend_n, data.fast_ms_n, strict=True)
    ]
    flags = {n: data[[f"{flag}_{n}" for flag in FLAGS]].set_axis(list(FLAGS), axis=1) for n in ("1", "n")}
    display[f"fastest at batch {first}"] = mark(latency, list(flags["1"].any(axis=1)))
    display[f"fastest at batch {last}"] = mark(throughput, list(flags["n"].any(axis=1)))
    display["quantized: against its float model"] = data["verdict"].replace("", ABSENT)
    caption = (
        f"On the CPU: each model's fastest backend (lowest median p50 over seeds) at batch {first} and at batch "
        f"{last}, with its latency and throughput. A quantized model is faster when its best p50 at either batch "
        f"is at least {FASTER:g}x below its float source's best (each behind its own fastest backend); else it is "
        "only smaller (its stored bytes, in the cost table). The speed-up figure draws each backend's panel."
    )
    note = flag_note(pd.concat(flags.values()), 2 * len(data), "fastest timings", noise_threshold(results))
    caption = f"{caption} {note}".rstrip()
    return Table("deployment", "Deployment on this CPU: fastest backend, and int8 that is faster", caption, data,
                 display)  # fmt: skip
