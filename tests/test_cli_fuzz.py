"""The command line fuzzed: argument lists drawn from every flag, with valid, boundary and hostile values, run
with ``--dry-run``. The only outcomes allowed: exit 0, or exit 2 with one line on stderr; never a traceback."""

from __future__ import annotations

import os
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main

HOSTILE_NUMBERS = ["nan", "-nan", "inf", "-inf", "1e309", "-1", "0", "-0", "0.0", "1e-9", "2", "7", "3.5", "0x10",
                   "99999999999999999999", "1_000", " ", "", "一", "--", "-"]  # fmt: skip
HOSTILE_LISTS = ["16", "16,32", "16,,32", ",", ",,", "16 32", "16;32", "a,b", "16,-16", "512,1024", "24", "1e3",
                 "16,16", "nan", ""]  # fmt: skip
HOSTILE_PATHS = ["", ".", "/", "/proc/forbidden/x", "/dev/null", "/dev/null/x", "relative/dir", "../x", "~", "a\nb",
                 "with space", "x" * 300, "/etc/passwd"]  # fmt: skip
NUMBER = st.sampled_from(HOSTILE_NUMBERS) | st.integers(-(2**70), 2**70).map(str) | st.floats().map(str)
WORD = st.text(min_size=0, max_size=12)

FLAGS = {
    "--preset": st.sampled_from(["quick", "paper", "huge", ""]) | WORD,
    "--dataset": st.sampled_from(["digits", "mnist", "fashion-mnist", "cifar10", "imagenet", ""]) | WORD,
    "--data-root": st.sampled_from(HOSTILE_PATHS),
    "--download": None,
    "--widths": st.sampled_from(HOSTILE_LISTS) | WORD,
    "--disc-width": NUMBER,
    "--kd": st.sampled_from(["none", "none,pixel-l1", "feature", "telepathy", ",", "", "none,,pixel-mse"]) | WORD,
    "--kd-weight": NUMBER,
    "--seeds": st.sampled_from(HOSTILE_LISTS) | NUMBER,
    "--epochs": NUMBER,
    "--batch-size": NUMBER,
    "--precision": st.sampled_from(["fp32", "bf16", "fp8", ""]),
    "--device": st.sampled_from(["auto", "cpu", "cuda", "tpu", ""]),
    "--cache-dir": st.sampled_from(HOSTILE_PATHS),
    "--teacher-width": NUMBER,
    "--teacher": st.sampled_from(HOSTILE_PATHS),
    "--fid-samples": NUMBER,
    "--inception-weights": st.sampled_from(HOSTILE_PATHS),
    "--inception-download": None,
    "--clip-weights": st.sampled_from(HOSTILE_PATHS),
    "--dinov2-weights": st.sampled_from(HOSTILE_PATHS),
    "--family": st.sampled_from(["dcgan", "resnet", "stylegan", ""]) | WORD,
    "--latency-backends": st.sampled_from(["eager", "eager,onnxruntime", "tensorrt", ",", "eager,eager"]) | WORD,
    "--latency-batches": st.sampled_from(HOSTILE_LISTS) | NUMBER,
    "--latency-seconds": NUMBER,
    "--log-every": NUMBER,
    "--samples-every-epoch": None,
    "--no-cuda-graphs": None,
    "--no-concurrency": None,
    "--executor": st.sampled_from(["local", "ray", "dask", ""]),
    "--ray-address": st.sampled_from(["auto", "127.0.0.1:1", "ray://x", ""]),
    "--gpus-per-run": NUMBER,
    "--cpus-per-run": NUMBER,
    "--no-report": None,
    "--quiet": None,
    "--out": st.sampled_from(HOSTILE_PATHS),
    "--methods": st.sampled_from(["width", "width,prune,quantize", "prune", "shrink", "width,width", ",", ""]) | WORD,
    "--prune-widths": st.sampled_from(HOSTILE_LISTS) | NUMBER,
    "--prune-importance": st.sampled_from(["bn", "l1", "bn,l1", "bn,bn", "taylor", ",", ""]) | WORD,
    "--finetune-epochs": NUMBER,
    "--quantize": st.sampled_from(["int8", "fp16,bf16,int8", "int4", "int8,int8", ",", ""]) | WORD,
    "--backbones": st.sampled_from(["lenet", "lenet,resnet", "resnet", "lenet,lenet", "inception", ""]) | WORD,
    "--threads": NUMBER,
}


@st.composite
def argument_lists(draw) -> list[str]:
    names = draw(st.lists(st.sampled_from(sorted(FLAGS)), max_size=6, unique=True))
    argv = []
    for name in names:
        argv.append(name)
        if FLAGS[name] is not None:
            argv.append(draw(FLAGS[name]))
    return argv


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),  # FUZZ_EXAMPLES=2000 for a longer search
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(argv=argument_lists())
def test_any_argument_list_exits_0_or_2_with_one_line(argv, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("fuzz") / "out"  # where a drawn --out is not given
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main([*argv, "--out", str(out), "--dry-run"]) if "--out" not in argv else main([*argv, "--dry-run"])
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    assert "Traceback" not in err
    assert not out.exists()  # a dry run writes nothing
