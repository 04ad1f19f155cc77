"""Precision: the numeric format a forward pass runs in ("fp32", "bf16" or "fp16"), in one place.

In this course *precision* always means the numeric format; the classification metric of the same
name is ``val_precision`` in a run's history. Lessons 03 to 06 set ``PRECISION = "auto"``, and
:func:`resolve_precision` turns it into what the hardware multiplies natively: bf16 on CUDA GPUs
that have bf16 units (Ampere and newer: A100, L4, H100), fp16 with a gradient scaler on older ones
(T4, V100), fp32 on a CPU for training. For inference (``inference=True``) a CPU with bf16
instructions (AVX512-BF16 or AMX on x86, BF16 on ARM) gets bf16 too: lesson 06's demo answers several
times faster (``benchmarks/inference_latency.py``).

    PRECISIONS        -- the three names and the torch dtype each autocasts to
    autocast          -- the context a forward pass runs in (training, evaluation, the predictor)
    make_scaler       -- the gradient scaler, on for fp16 only (lesson 03)
    native_bf16       -- whether a device multiplies bf16 in hardware
    resolve_precision -- "auto" -> the format this machine runs fastest; other names checked
    allow_tf32        -- let fp32 matrix products on a GPU use TF32 tensor cores

``helpers.train.loop`` (training), ``helpers.train.evaluation`` (measuring),
``helpers.serving.inference`` (the predictor), ``python -m helpers.train --precision`` and the demo all
use these.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # name -> autocast dtype


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse an unknown numeric format, and fp16 without a CUDA GPU, with a message saying why."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs a CUDA GPU (device is {device}); use 'bf16' or 'fp32'.")


def autocast(device: torch.device, precision: str):
    """A context in which the forward pass runs in ``precision`` ("fp32", "bf16" or "fp16")."""
    check_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


def make_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler:
    """A gradient scaler that is on for fp16 only. In fp16 small gradients would underflow to 0, so
    the loss is multiplied before ``backward`` and the gradients divided back before the step; in
    fp32 and bf16 the scaler is switched off and passes everything through unchanged. Lesson 03."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` multiplies bf16 numbers in hardware (not emulated). Lessons 03 and 06.

    CUDA: ``torch.cuda.is_bf16_supported(including_emulation=False)``, true from compute capability
    8.0 (A100, L4, H100; a T4 is 7.5). CPU: the instruction sets PyTorch reports in
    ``torch.cpu.get_capabilities()``: AVX512-BF16 or AMX-BF16 on x86, BF16 on ARM (Graviton 3,
    Apple M2 and newer). Without them PyTorch still computes bf16, emulated and slower than fp32.
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
    """The numeric format to run in on ``device``: ``precision`` itself, checked, or for ``"auto"``:

    - a CUDA GPU: ``"bf16"`` where it is native (:func:`native_bf16`), else ``"fp16"`` (with a
      gradient scaler when training, see :func:`make_scaler`);
    - a CPU: ``"fp32"`` for training; for ``inference`` ``"bf16"`` where the CPU has bf16
      instructions, else ``"fp32"`` (emulated bf16 would be slower).

    Raises ValueError for an unknown name, fp16 on a CPU (PyTorch has no fast fp16 there) and bf16
    on a GPU that only emulates it (a T4: use fp16 or auto). Lessons 03 to 06: the notebooks'
    ``PRECISION = "auto"``, ``python -m helpers.train --precision`` and the demo.
    """
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if native_bf16(device) else "fp16"
        return "bf16" if inference and native_bf16(device) else "fp32"
    check_precision(device, precision)  # unknown names; fp16 without a CUDA GPU
    if precision == "bf16" and device.type == "cuda" and not native_bf16(device):
        raise ValueError(
            f"precision='bf16': {torch.cuda.get_device_name(device)} has no bf16 units, so PyTorch would "
            "emulate bf16, slower than fp32; use 'fp16' (or 'auto', which picks it)."
        )
    return precision


def allow_tf32(device: torch.device | str) -> bool:
    """Let fp32 matrix products on a CUDA GPU use TF32 tensor cores; return whether the GPU has them.

    TF32 keeps fp32's range with a 10-bit mantissa (like fp16): on an A100 or H100 fp32 matmuls run
    several times faster and training curves do not change. The switch is process-wide
    (``torch.set_float32_matmul_precision("high")``), so it is set here, by the program that owns
    the process (``python -m helpers.train``, a notebook's set-up cell), never inside ``fit``.
    Nothing changes on a CPU. Lessons 03 and 04.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return False
    torch.set_float32_matmul_precision("high")
    return torch.cuda.get_device_capability(device) >= (8, 0)
