"""The arithmetic pretraining runs in: ``pretrain.precision`` (auto | bf16 | fp16 | fp32).

    amp = Precision.for_device(cfg.precision, device)   # refuses what the device cannot do
    with amp.autocast():
        loss, logs = model(x1, x2)
    amp.backward(loss, optimizer)     # fp16: scaled, then unscaled before clipping
    amp.step(optimizer)               # fp16: skipped when a gradient overflowed

- ``bf16``: autocast to bfloat16 (Ampere and later: A100, H100, L4, RTX 30xx on), no scaler:
  bf16 has fp32's exponent range.
- ``fp16``: autocast to float16 with a dynamic gradient scaler (``torch.amp.GradScaler``), what
  DINO and MoCo v3 trained with (``--use_fp16``, ``GradScaler``); a V100 or T4, which lack bf16,
  train in it. A step whose gradients overflow is skipped and the scale halved.
- ``fp32``: no autocast (TF32 stays off: torch's default for matrix products).
- ``auto``: bf16 on a GPU that has it, else fp16; fp32 on the CPU.

The CPU trains in fp32 whatever ``auto`` says, and refuses bf16 and fp16 (its autocast exists,
but nothing of the project's CPU numbers was measured under it). Either way the method's loss is
computed in fp32 (core/learner.py). The chosen precision is recorded in the run's provenance.
"""

from __future__ import annotations

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


class PrecisionUnavailable(ValueError):
    """The device cannot train in the precision asked for; the message names the fix (the CLI
    prints it as one ``error:`` line)."""


def resolve_precision(choice: str, device: torch.device) -> str:
    """The precision ``choice`` (pretrain.precision) gives on ``device``: bf16, fp16 or fp32;
    :class:`PrecisionUnavailable` with one line when the device cannot do it."""
    if device.type != "cuda":
        if choice in ("auto", "fp32"):
            return "fp32"
        raise PrecisionUnavailable(
            f"pretrain.precision: {choice} is for CUDA devices; this run trains on the "
            f"{device.type.upper()}, in fp32: set precision auto or fp32")
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if choice == "auto":
        return "bf16" if bf16 else "fp16"
    if choice == "bf16" and not bf16:
        raise PrecisionUnavailable(
            f"pretrain.precision: {torch.cuda.get_device_name(device)} has no bf16 arithmetic "
            "(it came with Ampere): set precision fp16 or fp32")
    return choice


class Precision:
    """Autocast and, for fp16, the gradient scaler, as the training loop calls them."""

    def __init__(self, name: str, device_type: str = "cuda"):
        if name not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)}, got {name!r}")
        self.name, self.device_type, self.dtype = name, device_type, DTYPES[name]
        self.scaler = torch.amp.GradScaler(device_type) if name == "fp16" else None
        self._scale: torch.Tensor | None = None  # the scale of the last backward

    @classmethod
    def for_device(cls, choice: str, device: torch.device) -> "Precision":
        return cls(resolve_precision(choice, device), device.type)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype or torch.float32,
                              enabled=self.dtype is not None)

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward()``; fp16: of the scaled loss, then the gradients unscaled, so that
        clipping and the optimizer see true gradients."""
        if self.scaler is None:
            loss.backward()
            return
        scaled = self.scaler.scale(loss)  # makes the scale on the first call
        self._scale = self.scaler._get_scale_async().clone()  # update() changes it in place
        scaled.backward()
        self.scaler.unscale_(optimizer)

    def grad_scale(self) -> torch.Tensor | None:
        """What the last backward multiplied the gradients by (None: nothing): the telemetry's
        hooks saw the scaled gradients of the block outputs."""
        return self._scale

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)  # skipped if a gradient is inf or nan
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
