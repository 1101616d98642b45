"""The second domain backbone: a small ResNet that trains in seconds, caches like the LeNet, is scored by default,
and is added to a grid that finished without it by scoring the saved generators, not by training them again."""

from __future__ import annotations

import functools
import json
import shutil
import time

import pandas as pd
import pytest
import torch

from bench.base.errors import UserError
from bench.cli import build_parser, grid_from_args, main
from bench.engine.records import results_table
from bench.grid.presets import PRESETS
from bench.metrics import classifier as clf
from bench.metrics.backbones import BACKBONES, ResNet
from bench.metrics.settings import QualitySpec
from tests import conftest

CPU = torch.device("cpu")
RESNET = BACKBONES["resnet"]
fails_cleanly = functools.partial(conftest.fails_cleanly, main)  # (capsys, args, expected)


@pytest.fixture(scope="session")
def resnet_on_digits(digits, classifier_cache) -> tuple[clf.Classifier, float]:
    """The digits ResNet of seed 0 and the seconds it took to get (training, unless an earlier test cached it)."""
    started = time.perf_counter()
    classifier = clf.load_or_train_classifier(digits, 0, classifier_cache, CPU, RESNET)
    return classifier, time.perf_counter() - started


@pytest.mark.parametrize("name", BACKBONES.names())
def test_a_backbone_sees_64x64_images_averaged_2x2_to_32x32(name):
    """One place resizes: a 64x64 backbone is the 32x32 network (same weights) fed each 2x2 block's mean, in
    training (``forward``) and in its metrics' features alike."""
    model = BACKBONES[name].model
    torch.manual_seed(0)
    at_64 = model(3, 64, 10).eval()
    at_32 = model(3, 32, 10).eval()
    at_32.load_state_dict(at_64.state_dict())  # the same parameters: built for 32x32 input
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    halved = images.reshape(2, 3, 32, 2, 32, 2).mean(dim=(3, 5))
    torch.testing.assert_close(at_64.features(images), at_32.features(halved))
    torch.testing.assert_close(at_64(images), at_32(halved))
    assert at_64.image_size == 64 and at_64.input_size == 32


def test_resnet_is_small():
    params = sum(p.numel() for p in ResNet(1, 28, 10).parameters())
    assert 20_000 < params < 100_000  # 49,538 counted


def test_resnet_on_digits_is_accurate_frozen_and_quick(resnet_on_digits, classifier_cache):
    classifier, seconds = resnet_on_digits
    assert type(classifier.model) is ResNet and classifier.backbone is RESNET
    assert classifier.test_accuracy > 0.9  # 0.9917 measured
    assert seconds < 60  # 7.7 s measured on one CPU thread
    assert not classifier.model.training
    assert all(not p.requires_grad for p in classifier.model.parameters())
    assert classifier.weights_path == classifier_cache / f"classifier-{classifier.key}.pt"
    payload = torch.load(classifier.weights_path, weights_only=True)  # plain tensors and numbers: no code
    assert payload["arch"] == RESNET.arch and payload["test_accuracy"] == classifier.test_accuracy


def test_resnet_cache_hit_does_not_retrain(digits, resnet_on_digits, classifier_cache, monkeypatch):
    classifier, _ = resnet_on_digits
    mtime = classifier.weights_path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier was retrained")

    monkeypatch.setattr(clf, "train_classifier", no_training)
    again = clf.load_or_train_classifier(digits, 0, classifier_cache, CPU, RESNET)
    assert (again.key, again.weights_sha, again.test_accuracy) == (
        classifier.key,
        classifier.weights_sha,
        classifier.test_accuracy,
    )
    assert classifier.weights_path.stat().st_mtime_ns == mtime


def test_default_quality_spec_scores_both_backbones():
    assert QualitySpec().backbones == ("lenet", "resnet")
    assert QualitySpec(backbones=["lenet"]).backbones == ("lenet",)


@pytest.mark.parametrize(
    "backbones, expected",
    [
        (("lenet", "bogus"), "unknown backbone 'bogus': choose one of lenet, resnet"),
        (("resnet",), "--backbones must be distinct and include lenet"),
        (("lenet", "lenet"), "--backbones must be distinct and include lenet"),
    ],
)
def test_bad_backbones_are_one_line_user_errors(backbones, expected):
    with pytest.raises(UserError, match=expected) as info:
        QualitySpec(backbones=backbones)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "value, expected",
    [("bogus", "unknown backbone 'bogus'"), ("resnet", "--backbones must be distinct and include lenet")],
)
def test_cli_refuses_bad_backbones(capsys, tmp_path, value, expected):
    fails_cleanly(capsys, ["--backbones", value, "--out", str(tmp_path / "out")], expected)
    assert not (tmp_path / "out").exists()


def test_both_backbones_by_default_and_the_flag_chooses():
    assert grid_from_args(build_parser().parse_args([])).quality.backbones == ("lenet", "resnet")
    assert grid_from_args(build_parser().parse_args(["--preset", "paper"])).quality.backbones == ("lenet", "resnet")
    chosen = grid_from_args(build_parser().parse_args(["--backbones", "lenet"]))
    assert chosen.quality.backbones == ("lenet",)
    assert grid_from_args(build_parser().parse_args([])).quality == PRESETS["quick"]["quality"]


def test_a_backbone_added_to_a_finished_grid_scores_its_saved_generators(tiny_results, tmp_path, capsys):
    """A grid finished without the ResNet, run again with it: every run gains the ResNet's columns, equal to what
    scoring while training gave, and nothing else changes: no run is trained again."""
    out = tmp_path / "results"
    shutil.copytree(tiny_results, out)
    resnet_columns = [col for col in results_table(tiny_results) if "resnet" in col]  # scores, stds, seconds
    assert "fid_resnet" in resnet_columns
    for path in out.glob("runs/*/result.json"):  # as a grid scored on the LeNet alone wrote them
        record = json.loads(path.read_text())
        record["metrics"] = {k: v for k, v in record["metrics"].items() if k not in resnet_columns}
        path.write_text(json.dumps(record))
    generators = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/generator.pt")}
    assert main([*conftest.tiny_grid_args(out), "--dry-run"]) == 0  # says what it would do, writes nothing
    plan = capsys.readouterr().out
    assert plan.count("finished (to be scored on 7 columns it lacks)") == 5 and "5 finished, 0 to train" in plan
    talking = [arg for arg in conftest.tiny_grid_args(out) if arg != "--quiet"]
    assert main(talking) == 0
    assert "scoring 5 finished runs on the columns they lack: fid_resnet" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in generators} == generators  # nothing retrained
    before, after = results_table(tiny_results), results_table(out)
    kept = [col for col in before if not col.startswith("seconds_")]
    pd.testing.assert_frame_equal(after[kept], before[kept])  # the ResNet's as scored in training, the rest kept
    assert main(talking) == 0  # nothing lacks now: nothing is scored again
    assert "scoring" not in capsys.readouterr().err
