"""Which number format a device can compute in: fp32 always, bf16 only where the hardware has it.

bf16 pays off on CUDA GPUs that support it and on CPUs whose bf16 instructions are fast, such
as those with AMX. AVX512-BF16 alone is not enough: without AMX a bf16 matrix multiply can be
slower than fp32, and bf16 autocast then trains slower too. oneDNN also runs bf16 on plain
AVX512 CPUs, emulated and slower still. On CPUs without AVX512 (many AMD EPYC, older Intel) it
has no bf16 kernels at all: its LSTM fails with "could not create a primitive descriptor" and
matrix multiplies fall back to code far slower than fp32. So `bf16` on such a machine is a
clear start-up error, and `auto` picks bf16 on a CPU only where it has bf16 instructions and
a bf16 matrix multiply measures clearly faster than fp32 there (`bf16_measured_faster`). The
measurements behind this are in docs/performance.md.

For decoding on a CPU there is also int8 (s2s.model.int8): int8 weights for the matrix
multiplies, which run on any x86 CPU with AVX2 and need no bf16.
"""

from __future__ import annotations

import functools
import logging
import time

import torch

from s2s.config import Precision
from s2s.errors import S2SError

log = logging.getLogger(__name__)

# `auto` takes bf16 on a CPU only if a bf16 matrix multiply is at least this much faster than
# fp32: autocast adds casts and fp32 elementwise work around the multiplies, so a step gains
# less than its multiplies do.
BF16_MIN_SPEEDUP = 1.5


def bf16_native(device: torch.device) -> bool:
    """The hardware has bf16 instructions: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (_cpu_has("_is_avx512_bf16_supported") or _cpu_has("_is_amx_tile_supported"))


def bf16_runs(device: torch.device) -> bool:
    """bf16 works here at all (natively, or emulated by oneDNN on an AVX512 CPU)."""
    return bf16_native(device) or (device.type == "cpu" and _onednn_bf16())


def _cpu_has(check: str) -> bool:
    """One of torch.cpu's private feature checks; False on a torch too old to have it."""
    probe = getattr(torch.cpu, check, None)
    return bool(probe()) if probe is not None else False


@functools.cache
def bf16_matmul_speedup() -> float:
    """fp32 time / bf16 time of a 1024 x 1024 matrix multiply on this CPU, best of five each after a
    warm-up: above 1 where bf16 is faster. Measured once per process, with twelve multiplies in all;
    draws no random numbers, so seeded runs stay reproducible."""

    def best_seconds(dtype: torch.dtype) -> float:
        a = torch.full((1024, 1024), 0.5, dtype=dtype)
        torch.mm(a, a)
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            torch.mm(a, a)
            timings.append(time.perf_counter() - start)
        return min(timings)

    speedup = best_seconds(torch.float32) / best_seconds(torch.bfloat16)
    log.info(
        "a bf16 matrix multiply runs %.2fx as fast as fp32 on this CPU (precision auto takes bf16 from %.1fx)",
        speedup,
        BF16_MIN_SPEEDUP,
    )
    return speedup


def bf16_measured_faster(device: torch.device) -> bool:
    """`auto`'s choice: bf16 on a CUDA GPU with bf16; on a CPU only with bf16 instructions and a
    bf16 matrix multiply at least BF16_MIN_SPEEDUP times as fast as fp32 here."""
    return bf16_native(device) and (device.type != "cpu" or bf16_matmul_speedup() >= BF16_MIN_SPEEDUP)


def _onednn_bf16() -> bool:
    """oneDNN has bf16 kernels for this CPU (AVX512 or better)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(requested: Precision, device: torch.device, option: str, decoding: bool = False) -> Precision:
    """The precision to use: `auto` becomes bf16 where it is native and measured faster, else fp32;
    `bf16` must be able to run; `int8` only for decoding on a CPU.

    `option` names the setting in the error message (e.g. "trainer.precision").
    """
    if requested == Precision.int8:
        if not decoding:
            raise S2SError(f"{option}=int8 is for decoding only (search.precision=int8); train in fp32, bf16 or auto")
        if device.type != "cpu":
            raise S2SError(
                f"{option}=int8 runs on CPUs only (torch's int8 kernels); on {device.type} use {option}=bf16 or fp32"
            )
        return requested
    if requested == Precision.auto:
        return Precision.bf16 if bf16_measured_faster(device) else Precision.fp32
    if requested == Precision.bf16 and not bf16_runs(device):
        capability = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else device.type
        raise S2SError(
            f"{option}=bf16 needs a CUDA GPU with bf16 or a CPU with AVX512 (best with AVX512-BF16 or AMX); "
            f"this {device.type} ({capability}) has no bf16 kernels: use {option}=fp32, "
            f"or {option}=auto to pick bf16 only where it is native and faster"
        )
    return requested
