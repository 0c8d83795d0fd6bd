"""Which number format a device can compute in: fp32 always, bf16 only where the hardware has it.

bf16 pays off on CUDA GPUs that support it and on CPUs with native bf16 instructions
(AVX512-BF16 or AMX). oneDNN can also run bf16 on plain AVX512 CPUs, emulated and slower.
On CPUs without AVX512 (many AMD EPYC, older Intel) it has no bf16 kernels at all: its LSTM
fails with "could not create a primitive descriptor" and matrix multiplies fall back to code
about 500x slower than fp32. So `bf16` on such a machine is a clear start-up error, and
`auto` picks bf16 only where it is native.

For decoding on a CPU there is also int8 (s2s.model.int8): int8 weights for the matrix
multiplies, which run on any x86 CPU with AVX2 and need no bf16.
"""

from __future__ import annotations

import torch

from s2s.config import Precision
from s2s.errors import S2SError


def bf16_native(device: torch.device) -> bool:
    """bf16 is faster than fp32 here: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX."""
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


def _onednn_bf16() -> bool:
    """oneDNN has bf16 kernels for this CPU (AVX512 or better)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(requested: Precision, device: torch.device, option: str, decoding: bool = False) -> Precision:
    """The precision to use: `auto` becomes bf16 where native, else fp32; `bf16` must be able to run;
    `int8` only for decoding on a CPU.

    `option` names the setting in the error message (e.g. "trainer.precision").
    """
    if requested == Precision.int8:
        if not decoding:
            raise S2SError(f"{option}=int8 is for decoding only (search.precision=int8); train in fp32, bf16 or auto")
        if device.type != "cpu":
            raise S2SError(f"{option}=int8 runs on CPUs only (torch's int8 kernels); on {device.type} use {option}=bf16 or fp32")
        return requested
    if requested == Precision.auto:
        return Precision.bf16 if bf16_native(device) else Precision.fp32
    if requested == Precision.bf16 and not bf16_runs(device):
        capability = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else device.type
        raise S2SError(
            f"{option}=bf16 needs a CUDA GPU with bf16 or a CPU with AVX512 (best with AVX512-BF16 or AMX); "
            f"this {device.type} ({capability}) has no bf16 kernels: use {option}=fp32, or {option}=auto to pick bf16 only where it is native"
        )
    return requested
