"""Precision: the numeric format a forward pass runs in ("fp32", "bf16" or "fp16"), in one place.

The classification metric of the same name is ``val_precision`` in a run's history. Lessons 03 to 06
set ``PRECISION = "auto"``; :func:`resolve_precision` turns it into what the hardware multiplies
natively. Training, evaluation, the predictor, ``python -m helpers.train --precision`` and the demo
use these.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # name -> autocast dtype


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse an unknown numeric format, and fp16 without a CUDA GPU, saying why."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA GPU (device is {device}); use 'bf16' or 'fp32'.")


def autocast(device: torch.device, precision: str):
    """A context in which the forward pass runs in ``precision``. Lessons 03 to 06."""
    check_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


def make_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler, on for fp16 only (lesson 03): fp16 gradients would underflow to 0, so the
    loss is scaled up before ``backward`` and the gradients back down before the step."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bf16 in hardware, not emulated. Lessons 03 and 06.

    CUDA: compute capability 8.0 and up (A100, L4, H100; not a T4). CPU: AVX512-BF16 or AMX-BF16 on
    x86, BF16 on ARM (Graviton 3, Apple M2), as ``torch.cpu.get_capabilities()`` reports them.
    """
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # PyTorch < 2.4 has no including_emulation: native means compute capability 8+
            return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        capabilities = torch.cpu.get_capabilities()
        return any(capabilities.get(name, False) for name in ("avx512_bf16", "amx_bf16", "bf16"))
    return False


def resolve_precision(precision: str, device: torch.device | str, *, inference: bool = False) -> str:
    """``precision`` checked, or for ``"auto"`` the fastest format on ``device``. Lessons 03 to 06.

    Auto: on a GPU bf16 where native, else fp16 (with a gradient scaler); on a CPU fp32, or bf16 for
    ``inference`` where the CPU has bf16 instructions. Refuses unknown names, fp16 on a CPU and bf16
    on a GPU that only emulates it (a T4).
    """
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if native_bf16(device) else "fp16"
        return "bf16" if inference and native_bf16(device) else "fp32"
    check_precision(device, precision)
    if precision == "bf16" and device.type == "cuda" and not native_bf16(device):
        raise ValueError(
            f"precision='bf16': {torch.cuda.get_device_name(device)} has no bf16 units, so PyTorch would "
            "emulate bf16, slower than fp32; use 'fp16' (or 'auto', which picks it)."
        )
    return precision


def allow_tf32(device: torch.device | str) -> bool:
    """Let fp32 matmuls on a CUDA GPU use TF32 tensor cores; return whether the GPU has them. Lessons 03, 04.

    TF32 keeps fp32's range with fp16's mantissa: several times faster on an A100 or H100, same
    training curves. The switch is process-wide, so the program that owns the process sets it (the
    CLI, a notebook's set-up cell), never ``fit``. Nothing changes on a CPU.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return False
    torch.set_float32_matmul_precision("high")
    return torch.cuda.get_device_capability(device) >= (8, 0)
