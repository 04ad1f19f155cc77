"""Several GPUs (no lesson): ``torchrun --nproc_per_node=4 -m helpers.train ...`` runs one process per
GPU with DistributedDataParallel. All that differs then is here; outside torchrun each function does
what one process needs."""

from __future__ import annotations

import os
from collections.abc import Callable, Sized
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

T = TypeVar("T")


class RankZeroFailed(RuntimeError):
    """Process 0 failed at the work the others were waiting for (see :func:`rank_zero_first`)."""


def running() -> bool:
    """Whether this process belongs to an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def current_rank() -> int:
    """This process's number (0 writes files and prints); 0 when not distributed."""
    return dist.get_rank() if running() else 0


def world_size_from_env() -> int:
    """How many processes torchrun started (``WORLD_SIZE``); 1 without it. Readable before :func:`setup`."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_from_env() -> int:
    """This process's number as torchrun set it (``RANK``); 0 without it. Readable before :func:`setup`."""
    return int(os.environ.get("RANK", "0"))


def setup(device_arg: str) -> tuple[torch.device, int, int]:
    """``(device, rank, world_size)`` for ``--device`` auto, cpu or cuda; under torchrun joins the group."""
    world_size = world_size_from_env()
    use_cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
    if world_size == 1:
        return torch.device("cuda" if use_cuda else "cpu"), 0, 1
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu"), dist.get_rank(), world_size


def cleanup(world_size: int) -> None:
    """Leave the process group (a no-op in a single process)."""
    if world_size > 1 and running():
        dist.destroy_process_group()


def sampler(dataset: Sized, rank: int, world_size: int, seed: int) -> DistributedSampler | None:
    """Each process trains on its own 1/world_size of the shuffled training set; None for one process."""
    if world_size == 1:
        return None
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DDP, which averages all processes' gradients in every backward; itself outside DDP."""
    if not running():
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def rank_zero_first(
    prepare: Callable[[], T], *, rank: int | None = None, broadcast: Callable[[Any], Any] | None = None
) -> T:
    """``prepare()`` (a download) in process 0 first, then in the others, which find it in place or raise
    :class:`RankZeroFailed`. ``rank`` and ``broadcast`` default to ``torch.distributed``'s (tests: own)."""
    if rank is None:
        rank = current_rank()
    if broadcast is None:
        if not running():
            return prepare()
        broadcast = _broadcast_from_rank_zero
    if rank == 0:
        try:
            result = prepare()
        except BaseException as error:
            broadcast(f"{type(error).__name__}: {error}")  # release the waiting processes, then fail
            raise
        broadcast(None)
        return result
    failure = broadcast(None)  # waits here until process 0 is done
    if failure is not None:
        raise RankZeroFailed(f"process 0 failed ({failure}); see its output")
    return prepare()


def _broadcast_from_rank_zero(value: Any) -> Any:
    message = [value]
    dist.broadcast_object_list(message, src=0)
    return message[0]
