"""helpers.train.distributed.rank_zero_first: process 0 first, the others after it, and released when it
fails.

Threads stand in for processes where only the order matters; one test runs two real gloo processes,
so the broadcast that torchrun's processes use is the one under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers.train import distributed
from helpers.train.distributed import RankZeroFailed, rank_zero_first

ROOT = Path(__file__).resolve().parents[1]


def _run_ranks(world_size: int, prepare_on_rank):
    """Run ``rank_zero_first`` in ``world_size`` threads standing in for DDP processes, with a
    broadcast made of a barrier: returns {rank: result or exception}."""
    barrier = threading.Barrier(world_size, timeout=5)  # a broken protocol fails instead of hanging
    shared: dict = {}
    results: dict = {}

    def run(rank: int) -> None:
        def broadcast(value):
            if rank == 0:
                shared["value"] = value
            barrier.wait()  # everyone waits here until process 0 sends
            return shared["value"]

        try:
            results[rank] = rank_zero_first(lambda: prepare_on_rank(rank), rank=rank, broadcast=broadcast)
        except Exception as error:
            results[rank] = error

    threads = [threading.Thread(target=run, args=(rank,), daemon=True) for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a process is still waiting"
    return results


def test_rank_zero_prepares_first_while_the_others_wait():
    events = []
    lock = threading.Lock()

    def prepare(rank):
        with lock:
            events.append(("start", rank))
        if rank == 0:
            time.sleep(0.2)  # a slow download: the others must not start meanwhile
        with lock:
            events.append(("end", rank))
        return f"data for {rank}"

    results = _run_ranks(3, prepare)
    assert results == {0: "data for 0", 1: "data for 1", 2: "data for 2"}
    assert events[:2] == [("start", 0), ("end", 0)], events
    assert not distributed.running()
    assert rank_zero_first(lambda: 42) == 42, "not distributed: just run it"


def test_when_rank_zero_fails_the_others_stop_instead_of_downloading_too():
    calls = []

    def prepare(rank):
        calls.append(rank)
        if rank == 0:
            raise OSError("disk full")
        return "data"

    results = _run_ranks(3, prepare)
    assert calls == [0], "only process 0 tried"
    assert isinstance(results[0], OSError)
    for rank in (1, 2):
        assert isinstance(results[rank], RankZeroFailed) and "OSError: disk full" in str(results[rank])


TWO_GLOO_PROCESSES = """
import json, os, sys, time
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers.train.distributed import RankZeroFailed, rank_zero_first

def slow_on_zero(rank):
    entered = time.monotonic()
    time.sleep(1.0 if rank == 0 else 0.0)  # process 0 "downloads" for a second
    return {"entered": entered, "left": time.monotonic()}

def fails_on_zero(rank, calls):
    calls.append(rank)
    if rank == 0:
        raise OSError("disk full")

def worker(rank, log_dir, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    log = rank_zero_first(lambda: slow_on_zero(rank))
    calls = []
    try:
        rank_zero_first(lambda: fails_on_zero(rank, calls))
    except (OSError, RankZeroFailed) as error:
        log["failure"] = f"{type(error).__name__}: {error}"
    log["calls"] = calls
    with open(os.path.join(log_dir, f"{rank}.json"), "w") as f:
        json.dump(log, f)
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(worker, args=(sys.argv[1], sys.argv[2]), nprocs=2)
"""


@pytest.mark.slow
def test_two_gloo_processes_wait_for_process_0_and_learn_of_its_failure(tmp_path):
    """Process 1 starts only after process 0 has finished; when process 0 fails, process 1 does not
    try at all and raises RankZeroFailed naming process 0's error."""
    from helpers.serving.demo_server import free_port

    script = tmp_path / "two_processes.py"
    script.write_text(TWO_GLOO_PROCESSES)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    zero, one = (json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1))
    assert one["entered"] >= zero["left"]
    assert zero["failure"] == "OSError: disk full" and zero["calls"] == [0]
    assert one["failure"].startswith("RankZeroFailed: process 0 failed (OSError: disk full)")
    assert one["calls"] == [], "process 1 must not try what process 0 failed at"
