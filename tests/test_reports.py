"""reports/: every table and figure is written, the Markdown agrees with the CSV, intervals and diverged
runs are shown honestly, the CLI fails in one line, and the package never imports torch."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imsave

from reports import build_report
from reports.load import Results, load
from reports.metrics import ALL, BY_COLUMN, format_summary
from reports.plots import FIGURES as PLOT_FIGURES
from reports.plots import fastest_latency
from reports.stats import ci95, t975
from reports.tables import best_method_table, cost_table, quality_table, runs_table
from tests.conftest import tiny_grid_args

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("distillation", "iso-quality", "best-by-size", "cost", "quality", "gain", "sizes", "runs")
FIGURES = tuple(PLOT_FIGURES)  # every figure the report draws


def _generator_params(width: int) -> tuple[int, int]:
    """(parameters, BatchNorm channels) of the conditional DCGAN generator."""
    ngf = width // 8
    convs = 110 * 8 * ngf * 16 + 8 * ngf * 4 * ngf * 16 + 4 * ngf * 2 * ngf * 16 + 2 * ngf * ngf * 16 + ngf
    bn = 8 * ngf + 4 * ngf + 2 * ngf + ngf
    return convs + 2 * bn, bn


def _discriminator_params(width: int) -> tuple[int, int]:
    ndf = width // 8
    bn = 2 * ndf + 4 * ndf
    return 2 * ndf * 16 + ndf * 2 * ndf * 16 + 2 * ndf * 4 * ndf * 16 + 4 * ndf * 16 + 2 * bn, bn


def _state_dict_bytes(params: int, bn: int) -> int:
    return 4 * (params + 2 * bn) + 1_800  # running stats and the zip container of torch.save


def _generator_macs(width: int) -> int:
    ngf = width // 8
    return 110 * 8 * ngf * 16 + 8 * ngf * 4 * ngf * 16 * 16 + 4 * ngf * 2 * ngf * 16 * 64 + 2 * ngf * ngf * 16 * 256


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    """A synthetic results directory shaped like a real grid's: 2 seeds x widths {32, 512} x kd {none,
    pixel-l1}, plus width 64 where pixel-l1 has a single seed and the scratch run of seed 1315 diverged."""
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    plan = [(seed, width, kd) for seed in (1314, 1315) for width in (512, 32) for kd in ("none", "pixel-l1")]
    plan += [(1314, 64, "none"), (1314, 64, "pixel-l1"), (1315, 64, "none")]
    rows = []
    for seed, width, kd in plan:
        diverged = (seed, width, kd) == (1315, 64, "none")
        g_params, g_bn = _generator_params(width)
        d_params, d_bn = _discriminator_params(width)
        run_id = f"digits-w{width}-{kd}-s{seed}-{abs(hash((seed, width, kd))) % 10**10:010d}"
        fid = 4.0 + 40.0 / math.sqrt(width) * (0.6 if kd != "none" else 1.0) + rng.normal(0, 0.4)
        latency = 0.05 + g_params / 4e6 * rng.uniform(0.95, 1.05)
        row = {
            "run_id": run_id,
            "role": "teacher" if (width, kd) == (512, "none") else "student",
            "dataset": "digits",
            "width": width,
            "kd": kd,
            "kd_weight": 0.0 if kd == "none" else 1.0,
            "seed": seed,
            "epochs": 3,
            "batch_size": 64,
            "lr": 2e-4,
            "beta1": 0.5,
            "beta2": 0.999,
            "family": "dcgan",
            "disc_width": math.nan,
            "teacher_width": 512,
            "teacher_sha": math.nan,
            "precision": "fp32",
            "status": "diverged" if diverged else "done",
            "diverged_step": 120 if diverged else math.nan,
            "train_seconds": width * 0.3 + rng.uniform(5, 10),
            "steps": 120 if diverged else 300,
            "loss_g_final": 1.2,
            "loss_d_final": 1.1,
            "loss_kd_final": 0.0 if kd == "none" else 0.2,
            "g_params": g_params,
            "d_params": d_params,
            "g_bytes_fp32": _state_dict_bytes(g_params, g_bn),
            "g_bytes_fp16": _state_dict_bytes(g_params, g_bn) // 2,
            "d_bytes_fp32": _state_dict_bytes(d_params, d_bn),
            "d_bytes_fp16": _state_dict_bytes(d_params, d_bn) // 2,
            "g_macs": _generator_macs(width),
            "g_flops": 2 * _generator_macs(width),
            "latency_ms_cpu": latency,
            "latency_iqr_ms_cpu": latency * 0.05,
            "throughput_ips_cpu": 256 / (latency * 30) * 1e3,
            "throughput_iqr_ips_cpu": 10.0,
            "device_name_cpu": "Intel Xeon (2 threads)",
            "threads_cpu": 2,
            "fid_lenet": fid,
            "is_lenet": 9.5 - fid / 10 + rng.normal(0, 0.05),
            "is_lenet_std": 0.1,
            "kid_lenet": fid / 400 + rng.normal(0, 1e-3),
            "kid_lenet_std": 1e-3,
            "precision_lenet": 0.9 - fid / 100,
            "recall_lenet": 0.85 - fid / 80,
            "class_consistency": 0.99 - fid / 60 + rng.normal(0, 0.005),
            "teacher_fidelity_l1": 0.0 if (width, kd) == (512, "none") else 0.3 - (0.1 if kd != "none" else 0),
            "quality_n_fake": 1000,
            "quality_n_real": 1000,
            "classifier_test_acc": 0.991,
            "finished_at": "2025-01-01T12:00:00+00:00",
            "schema_version": 1,
        }
        if diverged:
            for col in (
                "fid_lenet",
                "is_lenet",
                "kid_lenet",
                "precision_lenet",
                "recall_lenet",
                "class_consistency",
                "teacher_fidelity_l1",
            ):
                row[col] = math.nan
        rows.append(row)

        run = root / "runs" / run_id
        run.mkdir(parents=True)
        (run / "result.json").write_text(json.dumps({"run_id": run_id}))
        steps = np.arange(0, row["steps"], 10)
        decay = np.exp(-steps / 150)
        pd.DataFrame(
            {
                "epoch": steps // 100,
                "step": steps,
                "loss_d": 1.0 + 0.4 * decay + rng.normal(0, 0.05, len(steps)),
                "loss_g_gan": 1.5 - 0.5 * decay + rng.normal(0, 0.1, len(steps)),
                "loss_kd": 0.0 if kd == "none" else 0.15 + 0.4 * decay + rng.normal(0, 0.01, len(steps)),
            }
        ).assign(loss_g=lambda f: f["loss_g_gan"] + f["loss_kd"]).to_csv(run / "losses.csv", index=False)
        image = rng.uniform(-1, 1, (2 * 28, 10 * 28)) * (0.3 if kd != "none" else 1.0)
        imsave(run / "samples.png", image, cmap="gray", vmin=-1, vmax=1)

    runs = pd.DataFrame(rows)
    teacher = runs[runs["role"] == "teacher"].set_index("seed")
    for column, ratio in {
        "g_params": "ratio_params",
        "g_bytes_fp32": "ratio_bytes",
        "g_macs": "ratio_macs",
        "d_params": "d_ratio_params",
        "d_bytes_fp32": "d_ratio_bytes",
        "latency_ms_cpu": "speedup_latency_cpu",
    }.items():
        runs[ratio] = runs["seed"].map(teacher[column]) / runs[column]
    runs.to_csv(root / "results.csv", index=False)
    timed = runs[runs["status"] == "done"]  # latency.csv: eager at the results' latency, onnxruntime 2x faster
    latency = [
        {"run_id": row.run_id, "backend": backend, "device": "cpu", "batch": batch, "status": "ok",
         "p50_ms": row.latency_ms_cpu * batch / speed, "throughput_ips": 1e3 * speed / row.latency_ms_cpu}
        for row in timed.itertuples() for backend, speed in (("eager", 1.0), ("onnxruntime", 2.0)) for batch in (1, 256)
    ]  # fmt: skip
    pd.DataFrame(latency).to_csv(root / "latency.csv", index=False)
    pd.DataFrame(
        {
            "reference": ["real-test", "untrained"],
            "dataset": ["digits", "digits"],
            "fid_lenet": [0.6, 310.0],
            "is_lenet": [9.8, 1.2],
            "kid_lenet": [0.0004, 0.9],
            "precision_lenet": [0.95, 0.0],
            "recall_lenet": [0.96, 0.0],
            "class_consistency": [0.992, 0.1],
        }
    ).to_csv(root / "references.csv", index=False)
    grid = {
        "preset": "quick",
        "dataset": "digits",
        "widths": [32, 64, 512],
        "kd": ["none", "pixel-l1"],
        "seeds": [1314, 1315],
        "epochs": 3,
        "device": "cpu (Intel Xeon, 2 threads)",
        "started_at": "2025-01-01T11:00:00+00:00",
        "something_new": {"ignored": True},
    }
    (root / "grid.json").write_text(json.dumps(grid))
    return root


@pytest.fixture(scope="module")
def cli_run(results_dir: Path) -> subprocess.CompletedProcess:
    """The report, built once by the CLI in a fresh interpreter that then lists the heavy modules it loaded."""
    code = (
        "import sys\n"
        "from reports.__main__ import main\n"
        f"status = main([{str(results_dir)!r}])\n"
        "heavy = ('torch', 'gans', 'distill', 'data')\n"
        "print('loaded:', sorted(m for m in heavy if m in sys.modules))\n"
        "print('bench:', sorted(m for m in sys.modules if m.startswith('bench')))\n"
        "sys.exit(status)\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def report_dir(results_dir: Path, cli_run: subprocess.CompletedProcess) -> Path:
    assert cli_run.returncode == 0, cli_run.stderr
    return results_dir / "report"


def _markdown_rows(path: Path) -> pd.DataFrame:
    """The pipe table of a Markdown file, as strings."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header, body = cells[0], [row for row in cells[2:]]
    return pd.DataFrame(body, columns=header)


def _mean_and_ci(cell: str) -> tuple[float, float, int]:
    """('12.30 ± 0.45') -> (12.30, 0.45, decimals shown); a range ('0.96 (0.94..0.98)', '0.99 [0.95, 1.00]')
    gives its mean and a NaN interval; '–' -> NaN."""
    if cell == "–":
        return math.nan, math.nan, 0
    mean, _, rest = cell.removesuffix("†").partition(" ")
    mean = mean.replace(",", "")
    places = len(mean.partition(".")[2])
    ci = rest.removeprefix("± ").replace(",", "") if rest.startswith("±") else ""
    return float(mean), float(ci) if ci else math.nan, places


def test_every_table_and_figure_is_written(results_dir: Path, report_dir: Path):
    check_every_table_and_figure(results_dir, report_dir)


def check_every_table_and_figure(results_dir: Path, report_dir: Path) -> None:
    for name in TABLES:
        for ext in ("csv", "md", "tex"):
            path = report_dir / "tables" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 0, path
    for name in FIGURES:
        for ext in ("png", "svg"):
            path = report_dir / "figures" / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
    assert "\\toprule" in (report_dir / "tables" / "quality.tex").read_text(encoding="utf-8")
    markdown = (report_dir / "report.md").read_text(encoding="utf-8")
    grid = json.loads((results_dir / "grid.json").read_text())
    widths = ", ".join(str(width) for width in grid["widths"])
    cpu = grid.get("cpu")  # a real grid's CPU kind, named after its device
    named = (
        f"; CPU {cpu['model']} ({', '.join(cpu['isa']) or 'no AVX2'}; ATen {cpu['aten_capability']}; "
        f"int8 engine {cpu['quantized_engine']})"
        if cpu
        else ""
    )
    device = f"device {grid['device']}{named}; date {grid['started_at'][:10]}."
    first_line = markdown.splitlines()[0]
    assert first_line.startswith(f"Grid: preset {grid['preset']}, dataset {grid['dataset']}, widths {widths}, ")
    assert first_line.endswith(device)
    for name in FIGURES:
        assert f"](figures/{name}.png)" in markdown


def test_markdown_main_table_equals_csv(report_dir: Path):
    check_markdown_main_table_equals_csv(report_dir)


def check_markdown_main_table_equals_csv(report_dir: Path) -> None:
    by_label = {metric.label: metric for metric in ALL}
    # a speed column's header names its backend and batch: "CPU latency, eager, batch 1 (ms)"
    by_label |= {
        f"{m.label.split(' (')[0]}, eager, batch {batch} ({m.label.split(' (')[1]}": m
        for m in ALL
        if m.column.startswith(("latency_ms_", "throughput_ips_"))
        for batch in (1, 4, 256)
    }
    expected_labels = {"cost": {"G params", "CPU latency, eager, batch 1 (ms)", "compression, params (×)"},
                       "quality": {"FID (LeNet)", "IS (LeNet)", "class consistency"}}  # fmt: skip
    for name, labels in expected_labels.items():
        data = pd.read_csv(report_dir / "tables" / f"{name}.csv")
        shown = _markdown_rows(report_dir / "tables" / f"{name}.md")
        assert len(shown) == len(data)
        compared = 0
        for (_, row), (_, cells) in zip(data.iterrows(), shown.iterrows(), strict=True):
            if pd.isna(row["width"]):  # a reference row of the quality table: named, with no model keys
                assert cells["model"] == row["model"] and cells["width"] == cells["objective"] == ""
            else:
                assert cells["width"] == str(int(row["width"])) and cells["objective"] == row["objective"]
            for label in set(shown.columns) & set(by_label):
                mean, _, places = _mean_and_ci(cells[label])
                expected = row[f"{by_label[label].report_name}_mean"]
                if math.isnan(expected):
                    assert math.isnan(mean)
                else:
                    assert mean == pytest.approx(expected, abs=0.5 * 10**-places + 1e-9), (label, cells[label])
                    compared += 1
        assert compared > 3 * len(data)
        assert labels <= set(shown.columns)
        assert all(label not in shown for other, o in expected_labels.items() if other != name for label in o)


def test_each_main_table_fits_a_page(report_dir: Path):
    for name in ("cost", "quality"):
        assert len(_markdown_rows(report_dir / "tables" / f"{name}.md").columns) <= 12, name
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    for link in ('href="tables/cost.csv"', 'href="tables/quality.tex"', 'href="figures/pareto.svg"'):
        assert link in html


def _variant(results_dir: Path, directory: Path, edit) -> Results:
    """``results_dir``'s results.csv changed by ``edit(frame) -> frame``, loaded from ``directory``."""
    edit(pd.read_csv(results_dir / "results.csv")).to_csv(directory / "results.csv", index=False)
    return load(directory)


def test_one_seed_interval_is_absent_not_zero(results_dir: Path, tmp_path: Path):
    def one_and_two_seeds(runs: pd.DataFrame) -> pd.DataFrame:
        """The narrowest scratch group keeps one seed; the teacher group gets a second one if it has none."""
        narrowest = (runs["kd"] == "none") & (runs["width"] == runs["width"].min())
        runs = runs[~narrowest | (runs["seed"] == runs.loc[narrowest, "seed"].min())]
        teacher = runs[runs["role"] == "teacher"]
        if teacher["seed"].nunique() < 2:
            extra = teacher.iloc[:1].assign(seed=teacher["seed"].max() + 1, run_id="extra-teacher")
            runs = pd.concat([runs, extra.assign(fid_lenet=extra["fid_lenet"] * 1.1)], ignore_index=True)
        return runs

    results = _variant(results_dir, tmp_path, one_and_two_seeds)
    table = quality_table(results)
    single = (table.data["kd"] == "none") & (table.data["width"] == table.data["width"].min())
    assert table.data.loc[single, "fid_lenet_n"].eq(1).all()
    assert table.data.loc[single, "fid_lenet_ci95"].isna().all()
    assert not table.display.loc[single, "FID (LeNet)"].str.contains("±").any()
    assert not table.display.loc[single, "FID (LeNet)"].str.contains("–").any()  # the mean is still there
    teacher = table.data["model"] == "teacher"  # two seeds: their range, not a 12.7-standard-error interval
    assert (table.data.loc[teacher, "fid_lenet_ci95"] > 0).all()
    low, high = table.data.loc[teacher, "fid_lenet_min"].iloc[0], table.data.loc[teacher, "fid_lenet_max"].iloc[0]
    shown = table.display.loc[teacher, "FID (LeNet)"].iloc[0]
    shown_low, shown_high = map(float, re.fullmatch(r"[\d.,]+ \(([\d.,]+)\.\.([\d.,]+)\)", shown).groups())
    assert low < high and (shown_low, shown_high) == (pytest.approx(low, abs=0.05), pytest.approx(high, abs=0.05))


def test_quality_table_opens_with_the_rows_that_calibrate_each_score(results_dir: Path, tmp_path: Path):
    table = quality_table(load(results_dir))
    assert list(table.display["model"].iloc[:2]) == ["real test images", "untrained generator"]
    assert list(table.data["fid_lenet_mean"].iloc[:2]) == [0.6, 310.0]  # references.csv's values
    assert list(table.display["FID (LeNet)"].iloc[:2]) == ["0.600", "310"]
    assert list(table.display["recall (LeNet)"].iloc[:2]) == ["0.960", "0.00"]
    assert (table.display["model"].iloc[2:].isin(["teacher", "student"])).all()
    assert table.caption.startswith("The first rows calibrate every score")
    # the sample count they were scored at is named where references.csv has it
    references = pd.read_csv(results_dir / "references.csv").assign(quality_n_fake=[360, 1000])
    references.to_csv(tmp_path / "references.csv", index=False)
    pd.read_csv(results_dir / "results.csv").to_csv(tmp_path / "results.csv", index=False)
    named = quality_table(load(tmp_path)).display["model"].iloc[:2]
    assert list(named) == ["real test images (n = 360)", "untrained generator (n = 1,000)"]
    (tmp_path / "references.csv").unlink()
    alone = quality_table(load(tmp_path))
    assert alone.display["model"].iloc[0] == "teacher" and "calibrate" not in alone.caption


def test_an_interval_says_what_few_seeds_allow_and_keeps_to_the_metric_range():
    precision = replace(BY_COLUMN["precision_lenet"], bounds=(0.0, 1.0))
    assert format_summary(precision, 0.5, math.nan, 1, 0.5, 0.5) == "0.500"
    # two seeds: what a user saw as "0.493 ± 1.099" is the range of the two values
    assert format_summary(precision, 0.493, 1.099, 2, 0.407, 0.579) == "0.493 (0.407..0.579)"
    assert format_summary(precision, 0.5, 0.1, 3, 0.4, 0.6) == "0.500 ± 0.100"
    assert format_summary(precision, 0.9, 0.2, 3, 0.8, 1.0) == "0.900 [0.700, 1.000]"  # clipped at 1
    unbounded = replace(precision, bounds=(None, None))
    assert format_summary(unbounded, 0.9, 0.2, 3, 0.8, 1.0) == "0.900 ± 0.200"


def test_report_intervals_match_seed_counts(report_dir: Path):
    data = pd.read_csv(report_dir / "tables" / "quality.csv")
    shown = _markdown_rows(report_dir / "tables" / "quality.md")
    single = (data["fid_lenet_n"] == 1).to_numpy()
    assert data.loc[single, "fid_lenet_ci95"].isna().all()
    assert not shown.loc[single, "FID (LeNet)"].str.contains("±").any()
    two = (data["fid_lenet_n"] == 2).to_numpy()
    assert shown.loc[two, "FID (LeNet)"].str.contains(r"\(.+\.\..+\)$").all()
    several = (data["fid_lenet_n"] >= 3).to_numpy()
    assert shown.loc[several, "FID (LeNet)"].str.contains(r"±|\[").all()
    gain = pd.read_csv(report_dir / "tables" / "gain.csv")
    assert gain.loc[gain["pairs"] == 1, "fid_lenet_gain_ci95"].isna().all()


def test_diverged_runs_are_shown(results_dir: Path, tmp_path: Path):
    def diverge_one(runs: pd.DataFrame) -> pd.DataFrame:
        victim = runs.index[(runs["role"] == "student") & (runs["status"] == "done")][0]
        runs.loc[victim, ["status", "diverged_step"]] = ["diverged", 77]
        runs.loc[victim, [m.column for m in ALL if m.quality and m.column in runs]] = math.nan
        return runs

    results = _variant(results_dir, tmp_path, diverge_one)
    diverged = results.runs[results.runs["status"] == "diverged"]
    listed = runs_table(results).display
    assert set(diverged["run_id"]) <= set(listed.loc[listed["status"] == "diverged", "run id"])
    assert "77" in set(listed["diverged at step"])
    main = cost_table(results).data
    assert main["diverged"].sum() == len(diverged)
    assert main.loc[main["diverged"] > 0, "status"].str.contains("diverged").all()
    assert main["status"].str.contains("at step 77").any()


def test_report_lists_every_run(results_dir: Path, report_dir: Path):
    runs = pd.read_csv(results_dir / "results.csv")
    listed = _markdown_rows(report_dir / "tables" / "runs.md")
    assert sorted(listed["run id"]) == sorted(runs["run_id"])
    for run_id, status in zip(runs["run_id"], runs["status"], strict=True):
        assert listed.loc[listed["run id"] == run_id, "status"].item() == status


def test_gain_is_kd_minus_scratch_per_seed(results_dir: Path, report_dir: Path):
    runs = pd.read_csv(results_dir / "results.csv")
    done = runs[runs["status"] == "done"].set_index(["width", "seed", "kd"])["fid_lenet"]
    gain = pd.read_csv(report_dir / "tables" / "gain.csv").set_index(["width", "kd"])
    scratch = done.xs("none", level="kd")
    compared = 0
    for kd in set(runs["kd"]) - {"none"}:
        expected = (done.xs(kd, level="kd") - scratch).dropna().groupby("width").mean()
        for width, value in expected.items():
            assert gain.loc[(width, kd), "fid_lenet_gain_mean"] == pytest.approx(value)
            compared += 1
    assert compared > 0
    assert "(< 0 better)" in (report_dir / "tables" / "gain.md").read_text(encoding="utf-8")


def test_size_table_uses_original_units(report_dir: Path):
    sizes = pd.read_csv(report_dir / "tables" / "sizes.csv").set_index("width")
    assert list(sizes.index) == [512, 64, 32]
    assert list(sizes["g_original_kib"]) == [14_300, 618, 271]
    assert sizes.loc[32, "g_compression_original"] == 52.75 and sizes.loc[32, "d_compression_original"] == 153
    shown = _markdown_rows(report_dir / "tables" / "sizes.md").set_axis(sizes.index)
    assert shown.loc[512, "G original"] == "14.3 MB" and shown.loc[32, "D original"] == "17 KB"
    assert re.fullmatch(r"\d+\.\d MB", shown.loc[512, "G ours (original units)"])
    for width in (64, 32):
        assert re.fullmatch(r"\d+ KB", shown.loc[width, "G ours (original units)"])
        assert sizes.loc[width, "g_compression"] == pytest.approx(
            sizes.loc[512, "g_bytes"] / sizes.loc[width, "g_bytes"]
        )
        assert shown.loc[width, "G ours (bytes)"] == f"{sizes.loc[width, 'g_bytes']:,.0f}"


def test_size_table_shows_only_what_applies(results_dir: Path, tmp_path: Path):
    from reports.tables import size_table

    results = _variant(results_dir, tmp_path, lambda runs: runs[runs["width"] != 64])
    table = size_table(results)
    assert list(table.data["width"]) == [512, 64, 32]  # the CSV keeps the original's every row
    assert list(table.display["model"]) == ["teacher (c=512)", "student (c=32)"]  # the untrained 64 is left out
    assert "–" not in set(table.display.drop(columns="model").to_numpy().ravel())
    assert "did not train (64) are left out" in table.caption
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    halved = {512: 256, 64: 128, 32: 16}
    other_widths = _variant(results_dir, elsewhere, lambda runs: runs.assign(width=runs["width"].map(halved)))
    nothing = size_table(other_widths)
    assert nothing.display.empty and "model" in nothing.markdown().splitlines()[0]  # a header, no rows
    assert "did not train (512, 64, 32)" in nothing.caption


def test_html_is_self_contained(report_dir: Path):
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    images = re.findall(r"<img[^>]*src=\"([^\"]*)\"", html)
    assert len(images) == len(FIGURES)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"(href|src)=\"(https?:)?//", html)
    assert "<table" in html


def test_cli_fails_in_one_line_on_bad_input(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "results.csv").write_text("")
    for target in (tmp_path / "missing", empty):
        done = subprocess.run(
            [sys.executable, "-m", "reports", str(target)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert str(target) in done.stderr


def test_cli_builds_without_torch(results_dir: Path, cli_run: subprocess.CompletedProcess):
    assert cli_run.returncode == 0, cli_run.stderr
    assert "loaded: []" in cli_run.stdout
    # of the bench, only its torch-free declarations: the results layout, the metric registry, the registry class
    torch_free = ["bench", "bench.base", "bench.base.errors", "bench.base.layout", "bench.base.metric_registry",
                  "bench.base.registry"]  # fmt: skip
    assert f"bench: {torch_free}" in cli_run.stdout
    assert f"report written to {results_dir / 'report'}" in cli_run.stdout


def test_report_without_grid_runs_or_quality(results_dir: Path, tmp_path: Path):
    runs = pd.read_csv(results_dir / "results.csv")
    quality = [metric.column for metric in ALL if metric.quality]
    runs.drop(columns=[col for col in quality if col in runs]).to_csv(tmp_path / "results.csv", index=False)
    assert build_report(tmp_path, tmp_path / "elsewhere") == tmp_path / "elsewhere"
    markdown = (tmp_path / "elsewhere" / "report.md").read_text(encoding="utf-8")
    widths = ", ".join(str(width) for width in sorted(runs["width"].unique()))
    assert markdown.startswith(f"Grid: preset unknown, dataset {runs['dataset'].iloc[0]}, widths {widths}, ")
    assert "grid.json missing" in markdown.splitlines()[0]
    assert markdown.count("Not drawn") == len(FIGURES)  # nothing to draw is said, not a crash
    assert "FID" not in (tmp_path / "elsewhere" / "tables" / "quality.md").read_text(encoding="utf-8")


def test_t_quantile_and_interval():
    assert t975(1) == 12.7062 and t975(2) == 4.3027 and math.isnan(t975(0))
    assert t975(35) == pytest.approx(2.0301, abs=1e-3)  # scipy.stats.t.ppf(0.975, 35)
    assert t975(1000) == pytest.approx(1.9623, abs=1e-3)
    assert ci95([1.0, 2.0, 3.0]) == pytest.approx(4.3027 / math.sqrt(3))
    assert math.isnan(ci95([5.0])) and math.isnan(ci95([5.0, math.nan]))


def test_report_of_a_real_tiny_grid(tiny_results: Path, tmp_path: Path):
    """The tiny grid of tests/conftest.py grown to two seeds (the first is reused, not retrained)."""
    from bench.cli import main

    results = tmp_path / "results"
    shutil.copytree(tiny_results, results)
    assert main(tiny_grid_args(results, "--seeds", "1314,1315")) == 0
    report = build_report(results)
    check_every_table_and_figure(results, report)
    check_markdown_main_table_equals_csv(report)
    quality = pd.read_csv(report / "tables" / "quality.csv")
    models = quality[quality["model"].isin(["teacher", "student"])]  # below the two reference rows
    assert len(models) == len(quality) - 2
    assert set(models["seeds"]) == {2} and models["fid_lenet_ci95"].notna().all()
    # the second backbone, scored by default: its own table, calibrated the same way, and the agreement table
    resnet = pd.read_csv(report / "tables" / "quality-resnet.csv")
    assert list(resnet["model"].iloc[:2]) == ["real test images (n = 100)", "untrained generator (n = 100)"]
    assert resnet["fid_resnet_mean"].iloc[0] < resnet["fid_resnet_mean"].iloc[2:].min()
    assert "fid_lenet_mean" not in resnet and "Quality per model on the ResNet backbone" in (
        report / "report.md"
    ).read_text(encoding="utf-8")
    agreement = pd.read_csv(report / "tables" / "agreement.csv")
    assert set(agreement["backbones"]) == {"LeNet vs ResNet"} and agreement["models"].eq(len(models)).all()


def test_pareto_shows_each_model_once_and_labels_every_front_model(results_dir: Path):
    from reports.plots import pareto, pareto_front

    results = load(results_dir)
    figure = pareto(results)
    runs = results.runs[results.runs["status"] == "done"]
    models = runs.groupby(["width", "objective"], as_index=False)[["g_bytes_stored", "fid_lenet"]].median()
    front = pareto_front(models, "g_bytes_stored", "fid_lenet")
    axes = {ax.get_title(): ax for ax in figure.axes}
    stored = axes["FID against generator size as stored"]
    assert stored.get_yscale() == "log"
    labels = [text.get_text() for text in stored.texts]
    assert labels == [f"w{width}" for width in front["width"]]  # every model on the front, once
    assert runs["seed"].nunique() == 2  # two seeds, yet the teacher is one labelled model
    assert labels.count(f"w{runs.loc[runs['role'] == 'teacher', 'width'].iloc[0]}") <= 1
    import matplotlib.pyplot as plt

    plt.close(figure)


def test_sample_tiles_are_shown_larger_than_their_pixels(report_dir: Path, results_dir: Path):
    from matplotlib.image import imread

    from reports.plots import SAMPLE_SCALE

    tile = imread(next(results_dir.glob("runs/*/samples.png")))
    figure = imread(report_dir / "figures" / "samples.png")
    runs = load(results_dir).runs
    objectives = runs["kd"].nunique()
    assert figure.shape[1] >= objectives * tile.shape[1] * SAMPLE_SCALE  # never shrunk below native size
    assert figure.shape[1] <= 1200  # and it fits the report's 1200 px page


def test_latex_tables_are_built_to_fit_the_text_width(report_dir: Path):
    for name in ("cost", "quality", "runs"):
        tex = (report_dir / "tables" / f"{name}.tex").read_text(encoding="utf-8")
        assert "\\ifdim\\wd0>\\linewidth\\resizebox{\\linewidth}{!}{\\box0}\\else\\box0\\fi" in tex  # only shrinks
        header = tex.splitlines()[tex.splitlines().index("\\toprule") + 1]
        cells = re.findall(r"\\begin\{tabular\}\[b\]\{@\{\}c@\{\}\}(.*?)\\end\{tabular\}", header)
        assert len(cells) == header.count(" & ") + 1  # every header cell stacked
        lines = [line.strip() for cell in cells for line in cell.split("\\\\")]
        assert all(len(line) <= 12 or " " not in line for line in lines), lines  # short lines, words unbroken


def test_the_pareto_latency_is_each_models_fastest_backend(results_dir: Path):
    results = load(results_dir)
    runs, labels = fastest_latency(results, results.runs)
    timed = runs[runs["status"] == "done"]
    assert timed["latency_cpu_fastest"].to_numpy() == pytest.approx(timed["latency_ms_cpu"].to_numpy() / 2)  # onnx
    assert runs.loc[runs["status"] != "done", "latency_cpu_fastest"].isna().all()  # never timed
    # the axis names the batch and the backends each model's fastest was chosen from
    label = "CPU latency, batch 1, each model's fastest backend\n(of eager, onnxruntime; ms, log scale)"
    assert labels == {"latency_cpu_fastest": label}
    victim = timed["run_id"].iloc[0]
    latency = results.latency
    without = latency[~((latency["run_id"] == victim) & (latency["backend"] == "onnxruntime"))]
    runs, _ = fastest_latency(replace(results, latency=without), results.runs)
    kept = runs.set_index("run_id").loc[victim]  # the model onnxruntime missed keeps its point, at its eager time
    assert kept["latency_cpu_fastest"] == pytest.approx(kept["latency_ms_cpu"])


def test_results_without_method_columns_are_width_models(results_dir: Path):
    runs = load(results_dir).runs
    assert "method" not in pd.read_csv(results_dir / "results.csv")  # written before pruning and quantization
    assert set(runs["method"]) == {"width"} and set(runs["quantize"]) == {""} and set(runs["finetune_epochs"]) == {0}
    assert set(runs["method_label"]) == {"width"}
    assert set(runs["series"]) == {"width · scratch", "width · pixel-l1"}
    assert runs["g_bytes_stored"].tolist() == runs["g_bytes_fp32"].tolist()  # stored as their fp32 checkpoint
    assert runs["ratio_stored"].tolist() == runs["ratio_bytes"].tolist()
    cost = cost_table(load(results_dir))
    assert "method" not in cost.display and "G stored size (KiB)" not in cost.display  # the page as before
    assert "G fp32 size (KiB)" in cost.display and "g_stored_kib_mean" in cost.data


def test_best_by_size_of_width_models_only(results_dir: Path):
    table = best_method_table(load(results_dir))
    data = table.data.set_index("budget_width")
    runs = pd.read_csv(results_dir / "results.csv")
    done = runs[runs["status"] == "done"]
    fid = done.groupby(["width", "kd"])["fid_lenet"].mean()
    assert list(data.index) == [512, 64, 32]
    for budget in data.index:
        fits = fid[fid.index.get_level_values("width") <= budget]
        width, kd = fits.idxmin()
        assert (data.loc[budget, "width"], data.loc[budget, "kd"]) == (width, kd)
        assert data.loc[budget, "fid_lenet_mean"] == pytest.approx(fits.min())
        assert data.loc[budget, "budget_kib"] == pytest.approx(
            done.loc[done["width"] == budget, "g_bytes_fp32"].median() / 1024
        )
    assert data["runner_up_series"].isna().all()  # one method: no runner-up of another
    assert set(table.display["runner-up (another method)"]) == {"–"}
