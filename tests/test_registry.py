"""Every registry refuses a second entry under a taken name and answers an unknown name in one line."""

import subprocess
import sys

import pytest

import data
import distill
import gans
from bench.base.errors import UserError
from bench.base.metric_registry import METRICS
from bench.base.registry import DuplicateNameError, Registry
from bench.executors import EXECUTORS

REGISTRIES = {
    "model family": gans.FAMILIES,
    "dataset": data.DATASETS,
    "distillation objective": distill.OBJECTIVES,
    "metric": METRICS,
    "executor": EXECUTORS,
}


@pytest.mark.parametrize("what", REGISTRIES)
def test_registry_refuses_a_duplicate_and_names_the_choices(what):
    registry = REGISTRIES[what]
    first = registry.names()[0]
    with pytest.raises(DuplicateNameError, match=f"{what} '{first}' is registered twice"):
        registry.add(first, registry[first])
    assert registry.names()[0] == first and len(set(registry.names())) == len(registry.names())
    with pytest.raises(UserError) as err:
        registry["no-such-entry"]
    assert str(err.value) == f"unknown {what} 'no-such-entry': choose one of {', '.join(registry.names())}"


def test_registry_keeps_registration_order():
    registry: Registry[int] = Registry("thing")
    registry.add("b", 1)
    registry.register("a")(2)
    assert registry.names() == ["b", "a"] and registry["a"] == 2 and "b" in registry and "c" not in registry


def test_torch_free_modules_import_without_torch():
    """What ``reports/`` reads of the bench (layout, metric registry, errors) never drags torch in."""
    code = "import sys, bench.base.layout, bench.base.metric_registry, reports; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
