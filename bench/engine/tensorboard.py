"""TensorBoard events of every run, with ``--tensorboard``: under ``<results>/tensorboard/<run id>``.

Per run: its losses at every logged step (``loss/d``, ``loss/g_gan``, ``loss/kd``, ``loss/g``), its fixed-(z, y)
sample grid after every epoch, and, once measured, its spec and final metrics as hyper-parameters (the HPARAMS
tab compares runs). TensorBoard is an optional extra (``pip install gan-kd-bench[tensorboard]``): the default
install stays lean, and the flag says so in one line when it is missing. ``tensorboard --logdir <results>/tensorboard``
shows every run of a grid.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
from torch import nn

from bench.base.errors import UserError

BOARD_DIR = "tensorboard"


def check_available() -> None:
    """Refuse ``--tensorboard`` in one line when TensorBoard is not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        raise UserError("--tensorboard needs TensorBoard: pip install 'gan-kd-bench[tensorboard]' (or tensorboard)")


def board_dir(run_dir: Path) -> Path:
    """A run's event directory: ``<results>/tensorboard/<run id>`` beside ``<results>/runs/<run id>``."""
    return Path(run_dir).parent.parent / BOARD_DIR / Path(run_dir).name


class RunBoard:
    """One run's writer; ``epoch`` adds the losses logged since its last call and the epoch's sample grid."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(board_dir(run_dir)))
        self.written = 0

    def epoch(self, log: list[list[float]], epoch: int, generator: nn.Module, noise: tuple) -> None:
        from torchvision.utils import make_grid  # torchvision loads only for a grid that writes events

        for _, step, *losses in log[self.written :]:
            for name, value in zip(("d", "g_gan", "kd", "g"), losses, strict=True):
                self.writer.add_scalar(f"loss/{name}", value, int(step))
        self.written = len(log)
        was_training = generator.training
        generator.eval()
        with torch.no_grad():
            images = generator(*noise).float().cpu()
        generator.train(was_training)
        grid = make_grid(images, nrow=int(noise[1].max()) + 1, normalize=True, value_range=(-1, 1), padding=1)
        self.writer.add_image("samples", grid, epoch + 1)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def write_hparams(run_dir: Path, spec: dict, metrics: dict) -> None:
    """A finished run's spec columns as hyper-parameters and its numeric metrics, in its event directory."""
    from torch.utils.tensorboard import SummaryWriter

    hparams = {key: value if isinstance(value, (int, float, str, bool)) else str(value) for key, value in spec.items()}
    scores = {
        f"metric/{key}": float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }
    with SummaryWriter(str(board_dir(run_dir))) as writer:
        writer.add_hparams(hparams, scores, run_name="final")
