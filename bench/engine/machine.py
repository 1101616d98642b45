"""What kind of CPU a grid's numbers came from: its instruction sets, PyTorch's kernel choice, the int8 engine.

The same seed gives different numbers on different CPU kinds: ATen dispatches its kernels by instruction set
(``ATEN_CPU_CAPABILITY`` can force another), and torch.ao's ``x86`` int8 engine runs oneDNN on VNNI CPUs and
fbgemm elsewhere. A results directory records the kind it ran on, and says so when a grid resumes on another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from bench.engine.device import device_name

# /proc/cpuinfo flag -> the name the records give it, in the order they are listed
ISA_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX",
}


@dataclass(frozen=True)
class CpuProfile:
    """The CPU kind: model name, the instruction sets that change kernels, and what PyTorch picked for them."""

    model: str
    isa: tuple[str, ...]
    aten_capability: str  # torch.backends.cpu.get_cpu_capability(): the kernels ATen runs
    quantized_engine: str  # torch.backends.quantized.engine at start

    def kind(self) -> tuple[tuple[str, ...], str]:
        """What makes two CPUs compute differently: the instruction sets and ATen's kernel choice."""
        return tuple(self.isa), self.aten_capability

    def describe(self) -> str:
        isa = ", ".join(self.isa) or "no AVX2"
        return f"{self.model} ({isa}; ATen {self.aten_capability}; int8 engine {self.quantized_engine})"

    def as_json(self) -> dict:
        return {**asdict(self), "isa": list(self.isa)}


def cpu_flags() -> set[str]:
    """The flags of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return set(next(line for line in handle if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return set()


def cpu_profile() -> CpuProfile:
    flags = cpu_flags()
    model = device_name(torch.device("cpu")).rsplit(" (", 1)[0]  # without the thread count
    return CpuProfile(
        model=model,
        isa=tuple(name for flag, name in ISA_FLAGS.items() if flag in flags),
        aten_capability=torch.backends.cpu.get_cpu_capability(),
        quantized_engine=torch.backends.quantized.engine,
    )


def profile_from(raw: object) -> CpuProfile | None:
    """The profile a ``grid.json`` recorded, or None when it holds none (or a damaged one)."""
    try:
        return CpuProfile(
            str(raw["model"]), tuple(raw["isa"]), str(raw["aten_capability"]), str(raw["quantized_engine"])
        )
    except (TypeError, KeyError):
        return None
