import functools
import os
import pickle
import re

import pytest
import torch

from bench.cli import main
from bench.latency import backends
from distill import objectives
from gans import families
from tests import conftest
from tests.conftest import tiny_grid_args

fails_cleanly = functools.partial(conftest.fails_cleanly, main)  # (capsys, args, expected)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--kd", "none,telepathy"], "unknown distillation objective 'telepathy'"),
        (["--widths", "16,1024"], "width 1024 is not allowed"),
        (["--widths", "20"], "width 20 is not allowed"),
        (["--widths", "sixteen"], "expected integers"),
        (["--epochs", "-1"], "--epochs must be at least 1"),
        (["--batch-size", "1"], "--batch-size must be at least 2"),
        (["--teacher", "/nonexistent/teacher.pt"], "no such file"),
        (
            ["--inception-weights", "/nonexistent/inception.pt"],
            "--inception-weights /nonexistent/inception.pt: no such",
        ),
        (["--clip-weights", "/nonexistent/clip.pt"], "--clip-weights /nonexistent/clip.pt: no such file"),
        (["--dinov2-weights", "/nonexistent/dinov2.pt"], "--dinov2-weights /nonexistent/dinov2.pt: no such file"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args, expected):
    fails_cleanly(capsys, ["--out", str(tmp_path / "out"), *args], expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu(capsys, tmp_path):
    fails_cleanly(capsys, ["--device", "cuda", "--out", str(tmp_path / "o")], "no CUDA GPU is available")


def test_missing_dataset_offline(capsys, tmp_path):
    args = ["--dataset", "mnist", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")]
    fails_cleanly(capsys, args, "pass --download")
    assert not (tmp_path / "o").exists()


def test_corrupt_teacher_checkpoint(capsys, tmp_path):
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(b"\x00not a checkpoint")
    fails_cleanly(capsys, ["--teacher", str(bad), "--out", str(tmp_path / "o")], "cannot be loaded safely")


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoint_that_carries_code_is_refused(capsys, tmp_path):
    evil = tmp_path / "teacher.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"blocks.0.0.weight": Payload()}, handle)
    fails_cleanly(capsys, ["--teacher", str(evil), "--out", str(tmp_path / "o")], "cannot be loaded safely")


def test_foreign_checkpoint_is_refused(capsys, tmp_path):
    foreign = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(3, 3)}, foreign)
    fails_cleanly(capsys, ["--teacher", str(foreign), "--out", str(tmp_path / "o")], "not a generator state_dict")


def test_incompatible_results_directory_is_left_alone(capsys, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "grid.json").write_text('{"schema_version": 0}')
    (out / "results.csv").write_text("run_id\nabc\n")
    fails_cleanly(capsys, tiny_grid_args(out), "results schema 0")
    assert (out / "grid.json").read_text() == '{"schema_version": 0}'
    assert (out / "results.csv").read_text() == "run_id\nabc\n"


def test_output_directory_that_cannot_be_written(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    fails_cleanly(capsys, ["--epochs", "1", "--out", str(blocker / "results")], "is not writable")


def readme_flag_list() -> set[str]:
    """The flags named by README's list (a flag added to the parser must join it at once): the paragraph whose list
    ends with "(`run_bench.py --help` explains each)"."""
    text = (conftest.ROOT / "README.md").read_text()
    end = "(`run_bench.py --help` explains each)"
    paragraph = next(p for p in text.split("\n\n") if end in p)
    return set(re.findall(r"--[a-z][a-z0-9-]*", paragraph.split(end)[0]))


def test_help_lists_every_flag(capsys):
    from bench.cli import build_parser

    flags = {option for action in build_parser()._actions for option in action.option_strings}
    assert {"--dataset", "--widths", "--kd", "--methods", "--executor", "--dry-run"} <= flags  # the parser was read
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert [flag for flag in sorted(flags) if not re.search(rf"(^|[\s,\[]){re.escape(flag)}\b(?!-)", out)] == []
    listed = readme_flag_list()
    assert sorted(flags - {"-h", "--help"} - listed) == []
    assert sorted(listed - flags) == []  # nor does the list name a flag the parser lacks
    assert "paper: mnist, widths 16,32,64,128,256,512, teacher width 512" in out
    assert f"objectives (--kd): {', '.join(objectives())}" in out and "pixel-l1" in objectives()
    assert f"model families (--family): {', '.join(families())}" in out and "dcgan" in families()
    assert f"latency backends (--latency-backends): {', '.join(backends())}" in out and "eager" in backends()


def test_ray_flags_need_the_ray_executor(capsys, tmp_path):
    fails_cleanly(capsys, ["--gpus-per-run", "0.5", "--out", str(tmp_path / "o")], "need --executor ray")


def test_loop_flags_reach_the_grid():
    from bench.cli import build_parser, grid_from_args

    default = grid_from_args(build_parser().parse_args([]))
    assert default.cuda_graphs and default.concurrent
    off = grid_from_args(build_parser().parse_args(["--no-cuda-graphs", "--no-concurrency"]))
    assert not off.cuda_graphs and not off.concurrent


def test_dry_run_prints_the_plan_and_writes_nothing(capsys, tmp_path):
    out = tmp_path / "fresh"
    assert main([*tiny_grid_args(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("dry run: 5 runs in 2 cohorts; digits (on disk)")
    assert "\nplan: 5 runs to train (" in text and "training about" in text  # its size, and its time timed here
    assert text.count("to train") == 7 and text.rstrip().endswith("0 finished, 5 to train; nothing was written")
    assert not out.exists()


def test_dry_run_knows_finished_resumable_and_unreadable_runs(capsys, tiny_results, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(tiny_results, out)
    runs = sorted((out / "runs").iterdir())
    (runs[0] / "result.json").write_text("{")
    (runs[1] / "result.json").unlink()
    (runs[1] / "state.pt").write_bytes(b"")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert main([*tiny_grid_args(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "unreadable and would be moved aside" in text and "resumes from its checkpoint" in text
    assert text.rstrip().endswith("3 finished, 2 to train; nothing was written")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before  # nothing moved, nothing written


def test_a_narrow_teacher_is_allowed_with_a_warning(tmp_path):
    import warnings

    with pytest.warns(UserWarning, match=r"the teacher \(width 32\) is narrower than the students of width 64"):
        assert main(["--widths", "64", "--teacher-width", "32", "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    line = warnings.formatwarning("a warning", UserWarning, "file.py", 1)  # as the command line prints it
    assert line == "warning: a warning\n"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--kd-weight", "nan"], "--kd-weight must be a finite number, got nan"),
        (["--kd-weight", "inf"], "--kd-weight must be a finite number, got inf"),
        (["--latency-seconds", "nan"], "latency seconds per cell must be a positive number, got nan"),
        (["--latency-seconds", "0"], "latency seconds per cell must be a positive number, got 0.0"),
        (["--latency-batches", "1,1"], "--latency-batches: 1 given more than once"),
        (["--latency-backends", "tensorrt"], "unknown latency backend 'tensorrt'"),
        (["--fid-samples", "0"], "--fid-samples must be at least 10, got 0"),
        (["--seeds", "-1"], "--seeds must lie in 0.."),
        (["--epochs", "100000"], "--epochs must be at most 10000"),
        (["--cache-dir", "/proc/forbidden/cache"], "--cache-dir /proc/forbidden/cache is not writable"),
        (["--inception-weights", "x" * 300], "no such file"),
        (["--executor", "ray", "--gpus-per-run", "nan"], "--gpus-per-run must be a number between 0 and 1"),
        (["--executor", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be at least 1"),
    ],
)
def test_every_bad_value_is_refused_before_anything_runs(capsys, tmp_path, args, expected):
    fails_cleanly(capsys, ["--out", str(tmp_path / "out"), *args], expected)
    assert not (tmp_path / "out").exists()


def test_a_full_disk_ends_the_run_with_one_line_naming_the_file(capsys, tmp_path, monkeypatch):
    import errno
    import os

    from bench.base import io as bench_io

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(bench_io.os, "fsync", no_space)
    out = tmp_path / "out"
    fails_cleanly(capsys, tiny_grid_args(out), f"no space left on the device to write {out / 'grid.json'}")
    assert not list(out.rglob("*.tmp")) and not (out / "grid.json").exists()


def test_list_flags_take_commas_or_spaces():
    from bench.cli import build_parser, grid_from_args

    spaced = grid_from_args(build_parser().parse_args(["--seeds", "1", "2", "--widths", "16", "32,64", "--kd",
                                                       "none", "pixel-l1"]))  # fmt: skip
    assert spaced.seeds == (1, 2) and spaced.widths == (16, 32, 64) and spaced.kd == ("none", "pixel-l1")


def test_a_run_directory_is_accepted_as_the_teacher(capsys, tiny_results, tmp_path):
    from bench.cli import build_parser, grid_from_args

    run = next(tiny_results.glob("runs/*-w64-none-*"))
    grid = grid_from_args(build_parser().parse_args(["--teacher", str(run)]))
    assert grid.teacher == str(run / "generator.pt")
    fails_cleanly(capsys, ["--teacher", str(tmp_path), "--out", str(tmp_path / "o")], "is a directory without")


def test_a_rerun_says_what_it_skipped_and_where_the_report_is(capsys, tiny_results, tmp_path):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(tiny_results, out)
    assert main([a for a in tiny_grid_args(out) if a not in ("--quiet", "--no-report")]) == 0
    captured = capsys.readouterr()
    assert "5 of 5 runs already finished, skipped" in captured.err
    assert captured.out.strip().splitlines()[-1] == f"report: {out / 'report' / 'report.html'}"


def test_help_needs_neither_torchvision_nor_scikit_learn():
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys, runpy; sys.argv = ['run_bench.py', '--help']\n"
            "try:\n    runpy.run_path('run_bench.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torchvision', 'sklearn') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"  # the slow imports wait for a run that needs them


@pytest.mark.parametrize("flag", ["--inception-weights", "--clip-weights", "--dinov2-weights"])
def test_an_unusable_weights_file_fails_before_the_results_directory_is_made(capsys, tmp_path, flag):
    damaged = tmp_path / "weights.pt"
    damaged.write_bytes(b"\x80\x02 not a checkpoint")
    fails_cleanly(capsys, [flag, str(damaged), "--out", str(tmp_path / "out")], "cannot be loaded safely")
    assert not (tmp_path / "out").exists()


CORES = len(os.sched_getaffinity(0))
# every value a run refuses, the dry run refuses in the same words (one validation function serves both)
REFUSED = [
    (["--out", "/proc/forbidden/x"], "--out /proc/forbidden/x is not writable"),
    (["--out", ""], "argument --out: expected a path, got an empty string"),
    (["--cache-dir", " "], "argument --cache-dir: expected a path, got an empty string"),
    (["--widths", "16,16"], "--widths: 16 given more than once"),
    (["--kd", "none,none"], "--kd: none given more than once"),
    (["--seeds", "1,1"], "--seeds: 1 given more than once"),
    (["--methods", "width,prune", "--prune-widths", "32,32"], "--prune-widths: 32 given more than once"),
    (["--methods", "width,quantize", "--quantize", "int8,int8"], "--quantize: int8 given more than once"),
    (["--backbones", "lenet,lenet"], "--backbones: lenet given more than once"),
    (["--methods", "width,prune", "--prune-widths", ""], "--prune-widths: give at least one value"),
    (["--threads", "0"], f"--threads must be between 1 and the {CORES} cores available, got 0"),
    (["--threads", str(CORES + 1)], f"--threads must be between 1 and the {CORES} cores available"),
    (["--executor", "ray", "--ray-address", ""], "--ray-address is empty"),
    (["--executor", "ray", "--cpus-per-run", str(CORES + 1)], "no node of the Ray cluster has that much"),
]
if not torch.cuda.is_available():
    REFUSED.append((["--latency-backends", "cuda-graph"], "--latency-backends cuda-graph runs on cuda only"))


@pytest.mark.parametrize("args, expected", REFUSED)
def test_the_dry_run_and_the_run_refuse_the_same_values_in_one_line(capsys, tmp_path, args, expected):
    out = tmp_path / "out"
    for mode in (["--dry-run"], []):
        line = fails_cleanly(capsys, ["--out", str(out), *args, *mode], expected)
        assert "\n" not in line.strip()
    assert not out.exists()


def test_output_to_a_log_file_is_one_line_per_phase_without_escape_codes(tmp_path):
    """With stderr not a terminal (a log file, a pipe), no bar is drawn: no carriage return, no ESC[A."""
    import subprocess
    import sys

    args = [arg for arg in tiny_grid_args(tmp_path / "out", "--widths", "16", "--kd", "none") if arg != "--quiet"]
    done = subprocess.run([sys.executable, "run_bench.py", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr and "\r" not in done.stderr
    lines = done.stderr.splitlines()
    for phase in ("preparing:", "plan: ", "trained ", "measured ", "timed ", "  preparing "):
        assert sum(line.startswith(phase) for line in lines) >= 1, (phase, lines)
    assert sum("preparing" in line for line in lines) == 2  # the grid's, and one for every latency model
