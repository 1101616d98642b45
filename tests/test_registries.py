"""Every entry of the compression method, executor, domain backbone and latency backend registries keeps its
contract: each test runs over the registry's ``names()``, so a new entry is covered the moment it registers.

Model families, objectives and datasets have theirs in test_gans.py, test_distill.py and test_data.py; every
latency backend's timing of a tiny generator, checked against eager PyTorch, is test_latency.py's
``test_every_backend_has_its_rows_for_a_tiny_model``.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch.nn import functional as F

import compress  # noqa: F401  the methods register themselves
from bench.base.metric_registry import quality_columns
from bench.cli import build_parser, chosen_executor, grid_from_args
from bench.engine.methods import METHODS, method_of
from bench.executors import EXECUTORS, ExecutorOptions
from bench.latency import BACKENDS, DEVICE_TYPES
from bench.metrics.backbones import BACKBONES, FEATURE_DIM, PRIMARY
from compress.quantize import MODES
from data import from_uint8, to_uint8
from tests.conftest import same_state, state_of


@pytest.fixture(scope="module")
def help_text() -> str:
    return build_parser().format_help()  # what --help prints


def option_help(option: str) -> str:
    return next(action.help for action in build_parser()._actions if option in action.option_strings)


# --- compression methods ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_is_listed_in_help_and_is_trained_or_derived(name, help_text):
    method = METHODS[name]
    assert method.name == name and callable(method.load)
    assert method.description and "\n" not in method.description
    assert f"\n  {name}: {method.description}\n" in help_text
    # trained: start, never a tolerance; derived: derive and the tolerance its model is checked against
    declared = (method.start is not None, method.derive is not None, method.tolerance is not None)
    assert declared in ((True, False, False), (False, True, True))
    assert method.columns is None or method.start is not None  # columns a trained run reads from its directory
    assert all(callable(f) for f in (method.start, method.derive, method.tolerance, method.columns) if f is not None)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_chosen_alone_makes_runs_it_is_the_method_of(name):
    grid = grid_from_args(build_parser().parse_args(["--methods", name]))
    made = [spec for spec in grid.runs() if method_of(spec) is METHODS[name]]
    assert grid.methods == (name,) and made
    assert all(method_of(spec) in (METHODS[name], METHODS["width"]) for spec in grid.runs())  # else its teacher


# --- executors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXECUTORS.names())
def test_every_executor_is_named_in_help_and_chosen_by_its_name(name):
    executor = EXECUTORS[name]
    assert executor.name == name and executor.description and callable(executor.run)
    assert re.search(rf"\b{re.escape(name)}\b", option_help("--executor"))
    # chosen on the command line, its check accepts its default settings on any device
    chosen, options = chosen_executor(build_parser().parse_args(["--executor", name, "--device", "cpu"]))
    assert chosen is executor and options == ExecutorOptions()
    for device in ("auto", "cpu"):
        assert executor.check(ExecutorOptions(), device) is None


# --- domain backbones ---------------------------------------------------------------------------------------------


def test_backbones_are_told_apart_by_their_cache_tags_and_extractor_names():
    names = BACKBONES.names()
    assert PRIMARY in names
    assert len({BACKBONES[n].arch for n in names}) == len({BACKBONES[n].feature_extractor for n in names}) == len(names)


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32), (3, 64)])
@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_serves_features_of_the_declared_size_to_torch_fidelity(name, channels, size, tmp_path):
    """Built for grey 28x28 and colour 32x32 and 64x64 images, saved as the cache stores it, and read back through its
    torch-fidelity feature extractor: the 128-d features and the logits of the network itself, from uint8 pixels."""
    from torch_fidelity.utils import create_feature_extractor

    import bench.metrics.classifier  # noqa: F401  (registers the backbones' feature extractors)

    backbone = BACKBONES[name]
    torch.manual_seed(0)
    model = backbone.model(channels, size, 10).eval()
    pixels = to_uint8(torch.rand(3, channels, size, size) * 2 - 1)
    features, logits = model.features_and_logits(from_uint8(pixels))
    assert features.shape == (3, FEATURE_DIM) and logits.shape == (3, 10)
    assert torch.equal(features, model.features(from_uint8(pixels))) and torch.equal(logits, model(from_uint8(pixels)))
    assert torch.isfinite(features).all() and features.std() > 0

    path = tmp_path / "classifier.pt"
    torch.save({"arch": backbone.arch, "channels": channels, "image_size": size, "num_classes": 10,
                "state_dict": model.state_dict()}, path)  # fmt: skip
    extractor = create_feature_extractor(
        backbone.feature_extractor, ["features", "logits"], cuda=False, feature_extractor_weights_path=str(path),
        verbose=False,
    )  # fmt: skip
    served_features, served_logits = extractor(pixels)
    torch.testing.assert_close(served_features, features)
    torch.testing.assert_close(served_logits, logits)
    with pytest.raises(ValueError, match="28x28, 32x32 or 64x64"):
        backbone.model(channels, 48, 10)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_recipe_trains_and_its_metrics_and_flag_exist(name):
    backbone = BACKBONES[name]
    recipe = backbone.recipe
    assert recipe.batch_size >= 2 and recipe.min_epochs >= 1 and recipe.min_steps >= 1 and recipe.max_shift >= 0
    assert 0 <= recipe.label_smoothing < 1
    torch.manual_seed(0)
    model = backbone.model(1, 28, 10).train()
    optimizer = recipe.optimizer(model.parameters())
    schedule = recipe.schedule(optimizer, 4)
    before = state_of(model)
    loss = F.cross_entropy(
        model(torch.rand(4, 1, 28, 28) * 2 - 1), torch.arange(4), label_smoothing=recipe.label_smoothing
    )
    loss.backward()
    optimizer.step()
    schedule.step()
    assert torch.isfinite(loss) and not same_state(before, state_of(model))
    assert {f"{score}_{name}" for score in ("fid", "kid", "precision", "recall")} <= set(quality_columns({name}))
    chosen = tuple(dict.fromkeys((PRIMARY, name)))
    assert grid_from_args(build_parser().parse_args(["--backbones", ",".join(chosen)])).quality.backbones == chosen


# --- latency backends ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS.names())
def test_every_latency_backend_declares_where_and_what_it_runs(name, help_text):
    backend = BACKENDS[name]
    assert backend.name == name and callable(backend.prepare)
    assert backend.description and "\n" not in backend.description
    assert backend.devices and set(backend.devices) <= set(DEVICE_TYPES)
    assert backend.cleanup is None or callable(backend.cleanup)
    # the quantization modes it runs: only a backend that runs quantized models names some, and only real ones
    assert backend.modes is None or (backend.quantized and backend.modes and set(backend.modes) <= set(MODES))
    listed = re.search(r"latency backends \(--latency-backends\): (.*)", help_text).group(1)
    assert name in listed.split(", ")
    assert grid_from_args(build_parser().parse_args(["--latency-backends", name])).speed.backends == (name,)
