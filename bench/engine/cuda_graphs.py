"""Replaying a whole training step from a CUDA graph, and running its members side by side on CUDA streams.

Why: on a GPU an eager step of these small models is launch-bound (about 6 ms of Python and kernel launches
per model and step, whatever the width), so the GPU idles most of the time. A CUDA graph records every kernel
of one step once and replays it with a single launch; the members' branches of the graph (one CUDA stream
each, forked after the teacher forward and joined at the end) let small widths run beside big ones instead of
after them.

What the capture keeps unchanged, and how:

- **The data stream**: the batches and noise are still drawn eagerly from the (seed, epoch) generator and
  copied into the graph's static input tensors before every replay, so a graphed run sees exactly the
  batches an eager run sees.
- **The weights before the first step**: capturing needs a few eager warm-up steps (lazy optimiser state,
  cuDNN's choice of kernels). Every parameter, buffer (batch-norm running statistics included) and optimiser
  tensor is snapshotted before them and copied back in place afterwards, so warm-up trains nothing. A fresh
  Adam state is all zeros with step 0, which is what a not-yet-stepped optimiser's state is reset to.
- **Adam** runs with ``capturable=True`` (its step counts live on the GPU, as capture requires).
- **Losses** are the graph's static output tensors; the caller reads them every ``log_every`` steps, which is
  when divergence is detected, as in eager training.

Any failure of warm-up or capture restores the snapshot and is reported by the caller, which then trains
eagerly. The functions that do not need a GPU (snapshot, warm-up and restore, the step function itself) are
the ones the eager path and the CPU tests run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

Batch = tuple[torch.Tensor, ...]
StepFunction = Callable[[Sequence[Batch]], list[torch.Tensor]]
WARMUP_STEPS = 3


@dataclass
class StateSnapshot:
    """Copies of every tensor a training step changes, to put back in place after warm-up steps."""

    module_tensors: list[tuple[torch.Tensor, torch.Tensor]]  # (live tensor, saved copy)
    optimizers: list[tuple[torch.optim.Optimizer, dict[nn.Parameter, dict[str, torch.Tensor]]]]

    @classmethod
    def take(cls, modules: Sequence[nn.Module], optimizers: Sequence[torch.optim.Optimizer]) -> StateSnapshot:
        tensors = [t for m in modules for t in m.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)]
        saved_optimizers = []
        for optimizer in optimizers:
            state = {
                p: {key: value.detach().clone() for key, value in s.items() if isinstance(value, torch.Tensor)}
                for p, s in optimizer.state.items()
            }
            saved_optimizers.append((optimizer, state))
        return cls([(t, t.detach().clone()) for t in tensors], saved_optimizers)

    @torch.no_grad()
    def restore(self) -> None:
        """Copy the saved values back into the same tensors (a captured graph keeps their addresses)."""
        for live, saved in self.module_tensors:
            live.copy_(saved)
        for optimizer, saved_state in self.optimizers:
            for p, state in optimizer.state.items():
                saved = saved_state.get(p, {})
                for key, value in state.items():
                    if isinstance(value, torch.Tensor):
                        value.copy_(saved[key]) if key in saved else value.zero_()


def graphs_supported(device: torch.device) -> bool:
    """CUDA graphs exist on CUDA devices only."""
    return device.type == "cuda"


def make_capturable(optimizer: torch.optim.Optimizer) -> None:
    """Turn on Adam's ``capturable`` mode, moving any step count the optimiser already holds to the device."""
    for group in optimizer.param_groups:
        group["capturable"] = True
    for p, state in optimizer.state.items():
        step = state.get("step")
        if isinstance(step, torch.Tensor) and step.device != p.device:
            state["step"] = step.to(device=p.device, dtype=torch.float32)


def warm_up(step: StepFunction, batches: Sequence[Batch], snapshot: StateSnapshot, steps: int = WARMUP_STEPS) -> None:
    """Run ``steps`` eager steps (on a side stream on CUDA, as capture asks), then undo what they trained."""
    try:
        with side_stream(batches[0][0].device):
            for _ in range(steps):
                step(batches)
    finally:
        snapshot.restore()


@contextmanager
def side_stream(device: torch.device) -> Iterator[None]:
    """Run the block on a fresh CUDA stream ordered after the current one; a no-op off CUDA."""
    if device.type != "cuda":
        yield
        return
    origin = torch.cuda.current_stream(device)
    stream = torch.cuda.Stream(device)
    stream.wait_stream(origin)
    with torch.cuda.stream(stream):
        yield
    origin.wait_stream(stream)


class Branches:
    """One CUDA stream per branch of a step: all fork from the current stream, and all join it at the end.

    Off CUDA, or with ``count`` 0, every method is a no-op and the branches run one after another.
    """

    def __init__(self, device: torch.device, count: int) -> None:
        self.streams = [torch.cuda.Stream(device) for _ in range(count)] if device.type == "cuda" else []
        self.origin: torch.cuda.Stream | None = None

    def fork(self) -> None:
        if self.streams:
            self.origin = torch.cuda.current_stream()
            for stream in self.streams:
                stream.wait_stream(self.origin)

    @contextmanager
    def branch(self, index: int) -> Iterator[None]:
        if not self.streams:
            yield
            return
        with torch.cuda.stream(self.streams[index]):
            yield

    def join(self) -> None:
        if self.streams and self.origin is not None:
            for stream in self.streams:
                self.origin.wait_stream(stream)


class GraphedStep:
    """A step function captured once on static inputs and replayed with one launch per call."""

    def __init__(self, graph: torch.cuda.CUDAGraph, inputs: list[Batch], outputs: list[torch.Tensor]) -> None:
        self.graph, self.inputs, self.outputs = graph, inputs, outputs

    @classmethod
    def capture(cls, step: StepFunction, batches: Sequence[Batch], snapshot: StateSnapshot) -> GraphedStep:
        """Warm ``step`` up on copies of ``batches``, undo the warm-up, and capture one step into a graph.

        The snapshot's optimisers are switched to capturable mode first (and stay so: eager steps work too).
        """
        for optimizer, _ in snapshot.optimizers:
            make_capturable(optimizer)
        inputs = [tuple(t.clone() for t in batch) for batch in batches]
        warm_up(step, inputs, snapshot)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                outputs = step(inputs)
        except BaseException:
            snapshot.restore()  # an aborted capture must leave the weights as they were
            raise
        return cls(graph, inputs, outputs)

    def __call__(self, batches: Sequence[Batch]) -> list[torch.Tensor]:
        """Refill the static inputs with ``batches``, replay, return the (static) outputs."""
        for static, batch in zip(self.inputs, batches, strict=True):
            for target, source in zip(static, batch, strict=True):
                target.copy_(source, non_blocking=True)
        self.graph.replay()
        return self.outputs
