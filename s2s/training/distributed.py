"""Data-parallel training under `torchrun`, on PyTorch's own DistributedDataParallel.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; with WORLD_SIZE > 1 each process
joins a process group (NCCL on GPUs, gloo on CPU). Every rank builds the same
epoch of token-budget batches from the shared seed and takes its own slice, so
no two ranks see the same batch. Rank 0 alone writes logs, checkpoints and
validation results; the others wait for its decisions.
"""

from __future__ import annotations

import gc
import hashlib
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

from s2s.errors import S2SError

T = TypeVar("T")

# Validation runs on rank 0 while the others wait in a collective: allow it to take long.
COLLECTIVE_TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_environment() -> World:
    """Join the process group torchrun describes (once); a single process gets World()."""
    if not launched_by_torchrun():
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)
    return current()


def current() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(rank=dist.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", "0")), size=dist.get_world_size())


def shared_run_dir(pattern: str = "outputs/%Y-%m-%d/%H-%M-%S") -> str:
    """One run directory for all ranks: rank 0 takes the time, the others receive it."""
    chosen = [time.strftime(pattern) if current().is_main else ""]
    dist.broadcast_object_list(chosen, src=0)
    return chosen[0]


def broadcast(value: Any) -> Any:
    """Rank 0's value, on every rank."""
    if not current().distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over ranks of a small tensor (the input is left unchanged)."""
    if not current().distributed:
        return values
    summed = values.clone()
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed


def gather(value: Any) -> list[Any]:
    """Every rank's value, in rank order, on every rank."""
    if not current().distributed:
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    if current().distributed:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (after a normal finish, call barrier() first)."""
    if dist.is_available() and dist.is_initialized():
        # Free what may still hold gloo work (DDP's reducer, in a reference cycle) now, not
        # during interpreter finalization, where its destruction can abort the process.
        gc.collect()
        dist.destroy_process_group()


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on any (a signal may reach one rank first)."""
    if not current().distributed:
        return flag
    return bool(sum_over_ranks(torch.tensor([float(flag)]))[0] > 0)


def parameter_checksum(model: torch.nn.Module) -> str:
    """A short hash of all parameters, to check that data-parallel ranks agree."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def updates_per_epoch(num_batches: int, accumulate: int) -> int:
    """Updates in an epoch of `num_batches` when each takes `accumulate` batches on every rank."""
    per_update = accumulate * current().size
    if num_batches < per_update:
        raise S2SError(
            f"an epoch has only {num_batches} batches, fewer than optim.accumulate x ranks = {per_update}; "
            "lower data.max_tokens or optim.accumulate"
        )
    return num_batches // per_update


def rank_updates(plan: Sequence[T], accumulate: int, start: int) -> Iterator[tuple[int, Sequence[T]]]:
    """(update index, this rank's batches of the epoch `plan`) for the updates from `start` on.

    Update u uses batches [u*G, (u+1)*G) of the shared epoch order (G = accumulate x ranks); rank r
    takes every ranks-th of them from r. The last partial group is dropped so all ranks do the same
    number of updates.
    """
    world = current()
    per_update = accumulate * world.size
    for update in range(start, updates_per_epoch(len(plan), accumulate)):
        yield update, plan[update * per_update + world.rank : (update + 1) * per_update : world.size]
