"""Telemetry the momentum ideas need: gradient stability per block (the gap lives in learner.py).

    monitor = StabilityMonitor.attach(learner)   # hooks on each backbone block and the projector
    loss.backward(); monitor.step()              # once per optimiser step
    monitor.latest()    # {"stem": ||dL/d out||, "stage1": ..., "projector": ...} of the last step
    monitor.summary()   # {"stem": {"cv": ..., "rel_change": ...}, ...} over every step so far

Each hooked block's output gets a tensor hook that adds the squared norm of dL/d(output) to that
block's slot; a block that runs on both views contributes both, so a step records
||dL/d(output)|| over the whole step. Per block the run reports the coefficient of variation of
that norm over steps (std / mean) and the mean relative change from one step to the next,
|g_t - g_{t-1}| / g_{t-1}. Norms stay on the device until :meth:`flush`, so the hooks add no
host synchronisation to a GPU step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def block_names(num_stages: int) -> list[str]:
    return ["stem"] + [f"stage{i + 1}" for i in range(num_stages)] + ["projector"]


class StabilityMonitor:
    def __init__(self, modules: dict[str, nn.Module]):
        self.names = list(modules)
        self._sq: list[Tensor | float] = [0.0] * len(self.names)
        self._pending: list[Tensor] = []
        self._handles = [module.register_forward_hook(self._forward_hook(i))
                         for i, module in enumerate(modules.values())]
        # running statistics over flushed steps (float64, host)
        self.count, self._sum, self._sumsq = 0, [0.0] * len(self.names), [0.0] * len(self.names)
        self._change, self._prev = [0.0] * len(self.names), None

    @classmethod
    def attach(cls, learner: nn.Module) -> "StabilityMonitor":
        """Hooks on ``learner.backbone.blocks`` and ``learner.projector`` (the student's)."""
        blocks = learner.backbone.blocks
        modules = dict(zip(block_names(len(blocks) - 1), [*blocks, learner.projector]))
        return cls(modules)

    def _forward_hook(self, i: int):
        def hook(module, inputs, output):
            if isinstance(output, Tensor) and output.requires_grad:
                output.register_hook(lambda grad: self._add(i, grad))
        return hook

    def _add(self, i: int, grad: Tensor) -> None:
        self._sq[i] = self._sq[i] + grad.detach().float().pow(2).sum()

    def step(self, scale: Tensor | None = None) -> None:
        """Close the current step: its norms join the pending ones. ``scale``: what the loss was
        multiplied by before backward (fp16's gradient scaler), divided out here."""
        norms = [torch.as_tensor(s, dtype=torch.float32).reshape(()) for s in self._sq]
        device = next((n.device for n in norms if n.device.type != "cpu"), torch.device("cpu"))
        norms = torch.stack([n.to(device) for n in norms]).sqrt()
        self._pending.append(norms if scale is None else norms / scale.to(device))
        self._sq = [0.0] * len(self.names)

    def flush(self) -> list[list[float]]:
        """Move pending steps to the host, fold them into the running statistics and return them
        (one row of per-block norms per step)."""
        if not self._pending:
            return []
        rows = torch.stack(self._pending).double().cpu().tolist()
        self._pending = []
        for row in rows:
            for j, g in enumerate(row):
                self._sum[j] += g
                self._sumsq[j] += g * g
                if self._prev is not None and self._prev[j] > 0:
                    self._change[j] += abs(g - self._prev[j]) / self._prev[j]
            self._prev = row
            self.count += 1
        return rows

    def latest(self) -> dict[str, float]:
        """The norms of the last step (flushes)."""
        self.flush()
        return dict(zip(self.names, self._prev)) if self._prev is not None else {}

    def summary(self) -> dict[str, dict[str, float]]:
        self.flush()
        out = {}
        for j, name in enumerate(self.names):
            n = self.count
            mean = self._sum[j] / n if n else math.nan
            var = max(self._sumsq[j] / n - mean * mean, 0.0) if n else math.nan
            out[name] = {"grad_norm": mean,
                         "cv": math.sqrt(var) / mean if n and mean > 0 else math.nan,
                         "rel_change": self._change[j] / (n - 1) if n > 1 else math.nan}
        return out

    def state_dict(self) -> dict:
        self.flush()
        return {"names": self.names, "count": self.count, "sum": self._sum,
                "sumsq": self._sumsq, "change": self._change, "prev": self._prev}

    def load_state_dict(self, state: dict) -> None:
        if state["names"] != self.names:
            raise ValueError(f"stability state is for blocks {state['names']}, not {self.names}")
        self.count, self._prev = state["count"], state["prev"]
        self._sum, self._sumsq = list(state["sum"]), list(state["sumsq"])
        self._change = list(state["change"])

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
