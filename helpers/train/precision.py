"""Precision: the numeric format a forward pass runs in ("fp32", "bf16" or "fp16"), in one place (the
metric is ``val_precision``). Lessons 03-06 set ``"auto"``, which :func:`resolve_precision` resolves."""

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
    """A gradient scaler, on for fp16 only, whose gradients would underflow to 0 unscaled (lesson 03)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bf16 in hardware (A100, L4, H100, not a T4; CPUs with bf16 units).
    Lessons 03 and 06."""
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
    """``precision`` checked, or for ``"auto"`` the fastest on ``device``: bf16 on a GPU where native, else
    fp16; fp32 on a CPU (bf16 for ``inference`` where native). Lessons 03 to 06."""
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
    """Let fp32 matmuls on a CUDA GPU use TF32 tensor cores (fp32's range, several times faster); return
    whether it has them. Process-wide, so the CLI or a set-up cell calls it, never ``fit``. Lessons 03, 04."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    torch.set_float32_matmul_precision("high")
    return torch.cuda.get_device_capability(device) >= (8, 0)
