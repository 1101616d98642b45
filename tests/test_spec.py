"""Run ids: stable across versions of the suite, changed by what changes a trained model."""

from dataclasses import dataclass, replace

import pytest

from bench.base.errors import UserError
from bench.engine.spec import RunSpec
from bench.grid.presets import make_grid

# The quick preset's teacher as every earlier version of the suite named it: a change here re-keys (and so
# retrains) every finished run of every user.
QUICK_TEACHER = RunSpec("digits", 256, "none", 0.0, 1314, 6, 32, teacher_width=256)
QUICK_TEACHER_ID = "digits-w256-none-s1314-5b1fb09bd3"
PAPER_LAST_ID = "mnist-w512-pixel-l1-s1316-e9268e169b"


def test_known_run_ids_are_pinned():
    assert QUICK_TEACHER.run_id == QUICK_TEACHER_ID
    assert make_grid("quick").runs()[0] == QUICK_TEACHER
    trained_wide = [spec for spec in make_grid("paper").runs() if spec.describe() == "width"]
    assert trained_wide[-1].run_id == PAPER_LAST_ID
    # every method's ids as they were issued when its knobs were the spec's own fields
    quick = {(spec.describe(), spec.width, spec.kd): spec.run_id for spec in make_grid("quick").runs()}
    assert quick["prune-bn", 32, "none"] == "digits-w32-none-prune-bn-s1314-faccd11c51"
    assert quick["prune-bn+int8", 32, "none"] == "digits-w32-none-prune-bn-int8-s1314-922f759256"
    assert quick["once-for-all-32-128", 32, "none"] == "digits-w32-none-once-for-all-32-128-s1314-1043ff0ee6"
    openvino = make_grid("quick", settings={"quantize": {"modes": ("openvino-int8",)}}).runs()
    ids = {(spec.describe(), spec.width, spec.kd): spec.run_id for spec in openvino}
    assert ids["width+openvino-int8", 16, "none"] == "digits-w16-none-width-openvino-int8-s1314-e1a40c8c69"


@dataclass(frozen=True)
class LaterRunSpec(RunSpec):
    """A RunSpec as a later version might extend it: one more knob with a default."""

    pruning_ratio: float = 0.0


def test_a_new_field_at_its_default_keeps_every_id():
    for spec in make_grid("paper").runs():
        later = LaterRunSpec(**{name: getattr(spec, name) for name in spec.__dataclass_fields__})
        assert later.run_id == spec.run_id
        assert replace(later, pruning_ratio=0.5).run_id != spec.run_id


def test_every_field_that_changes_a_model_changes_the_id():
    base = QUICK_TEACHER
    changed = [
        replace(base, dataset="mnist"), replace(base, width=128), replace(base, kd="pixel-l1", kd_weight=1.0),
        replace(base, seed=1315), replace(base, epochs=7), replace(base, batch_size=64), replace(base, lr=1e-4),
        replace(base, beta1=0.0), replace(base, beta2=0.99), replace(base, family="resnet"),
        replace(base, disc_width=64), replace(base, teacher_width=512), replace(base, teacher_sha="ab"),
        replace(base, precision="bf16"), replace(base, image_size=64),
    ]  # fmt: skip
    ids = {spec.run_id for spec in changed}
    assert len(ids) == len(changed) and base.run_id not in ids


def test_an_image_size_keys_the_runs_only_where_it_is_not_the_datasets_own():
    native = [spec.run_id for spec in make_grid("quick").runs()]
    assert [spec.run_id for spec in make_grid("quick", image_size=28).runs()] == native
    at_64 = make_grid("quick", image_size=64).runs()
    assert {spec.image_size for spec in at_64} == {64} and not {spec.run_id for spec in at_64} & set(native)
    assert {spec.image_size for spec in make_grid("quick", dataset="imagefolder", image_size=32).runs()} == {None}
    with pytest.raises(UserError, match="^--image-size must be one of 28, 32, 64, got 48$"):
        make_grid("quick", image_size=48)


def test_scratch_runs_ignore_the_distillation_weight():
    assert replace(QUICK_TEACHER, kd_weight=3.0).run_id == QUICK_TEACHER_ID
