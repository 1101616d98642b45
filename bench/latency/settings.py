"""How a grid times its models: the latency phase's settings (docs/latency.md says what each knob does and why)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.base.errors import UserError
from bench.engine.spec import MAX_BATCH, check_int
from bench.latency import BACKENDS, DEVICE_TYPES


@dataclass(frozen=True)
class SpeedSpec:
    """How every model is timed (bench/latency; docs/latency.md says what each knob does and why)."""

    backends: tuple[str, ...] | None = None  # None: every registered backend that runs on the device
    batches: tuple[int, ...] = (1, 16, 256)  # latency at the smallest, throughput at the largest
    devices: tuple[str, ...] = ("cpu",)  # a grid times on the CPU, and on its GPU when it has one
    rounds: int = 16
    calls_per_round: int = 64  # 16 x 64 = 1,024 calls: MLPerf single-stream's minimum query count
    min_calls_per_round: int = 8  # slow cells: 16 x 8 = 128 calls at least, so p99 lies inside the data
    seconds_per_cell: float = 2.0  # timed seconds a cell aims at; sets its calls per round within the bounds
    warmup_calls: int = 5
    noise_threshold: float = 0.10  # IQR of the per-round medians / their median
    max_retimes: int = 2
    atol: float = 1e-4  # largest |backend - eager| allowed on images in [-1, 1]

    def __post_init__(self) -> None:
        object.__setattr__(self, "batches", tuple(self.batches))
        object.__setattr__(self, "devices", tuple(self.devices))
        if self.backends is not None:
            object.__setattr__(self, "backends", tuple(self.backends))
            if not self.backends or len(set(self.backends)) != len(self.backends):
                raise UserError(f"latency backends must be distinct and at least one, got {self.backends}")
            for name in self.backends:
                BACKENDS.check(name)
        if not self.batches or len(set(self.batches)) != len(self.batches):
            raise UserError(f"latency batch sizes must be distinct and at least one, got {self.batches}")
        for batch in self.batches:
            check_int(batch, "latency batch size", 1, MAX_BATCH)
        if not self.devices or any(d not in DEVICE_TYPES for d in self.devices):
            raise UserError(f"latency devices must be among {', '.join(DEVICE_TYPES)}, got {self.devices}")
        check_int(self.rounds, "latency rounds", 2)  # the noise measure needs two rounds at least
        check_int(self.calls_per_round, "calls per round", 1)
        check_int(self.min_calls_per_round, "minimum calls per round", 1, self.calls_per_round)
        check_int(self.warmup_calls, "warm-up calls", 1)
        check_int(self.max_retimes, "re-timings", 0)
        for name in ("seconds_per_cell", "noise_threshold", "atol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise UserError(f"latency {name.replace('_', ' ')} must be a positive number, got {value!r}")
