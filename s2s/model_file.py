"""Models as users hand them on: a run directory, one of its checkpoints, or one self-contained model file.

A model file (written by `python -m s2s.export`) holds everything decoding needs: the weights, the
sentencepiece model(s), the config, and a model card. It is a torch archive of plain data only
(tensors, strings, bytes, numbers, lists and dicts), read with `torch.load(weights_only=True)`, so
loading one runs no code from it. Its layout:

    format          "s2s-model"
    format_version  FORMAT_VERSION; a file of a newer version is refused with one line
    config          the run's config as a plain dict (search settings are the file's decoding defaults)
    weights         parameter name -> tensor, in the `storage` precision
    scales          int8 storage: parameter name -> per-row scales (fp32) of the int8 rows
    storage         fp32 | bf16 | int8: how the weights are stored (decoding precision is separate)
    tokenizers      file name (spm.model, or spm.src.model and spm.tgt.model) -> serialized sentencepiece model
    card            languages, training data, scores with their sacreBLEU signatures, parameters, version
    checksum        sha256 over weights, scales and tokenizers, so a damaged file is refused, not decoded
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from s2s import checkpoint
from s2s.data.subwords import Tokenizers, load_tokenizers, tokenizer_protos, tokenizers_from_protos
from s2s.errors import S2SError

FORMAT = "s2s-model"
FORMAT_VERSION = 1
STORAGES = ("fp32", "bf16", "int8")
PAYLOAD_KEYS = ("config", "weights", "scales", "storage", "tokenizers", "card", "checksum")
INT8_MIN_ELEMENTS = 4096  # smaller tensors (biases, norms) stay fp32: they save little and matter most per weight


@dataclass
class ModelSource:
    """What a model path gives: weights (fp32), the config dict, tokenizers, and where it came from."""

    weights: dict[str, torch.Tensor]
    config: dict[str, Any]
    tokenizers: Tokenizers
    origin: str  # the run directory, or the model file
    checkpoint_path: str  # the file the weights were read from
    card: dict[str, Any] = field(default_factory=dict)  # a model file's card; {} for a run
    checkpoint_state: dict[str, Any] = field(default_factory=dict)  # a checkpoint's other entries (metrics, step)


def read_model(path: str | None, which: str = "best", device: torch.device | str = "cpu") -> ModelSource:
    """Read a run directory (its `which` checkpoint), a checkpoint file or a model file.

    With no path, the most recent run under outputs/.
    """
    if path is not None and os.path.isfile(path):
        ckpt_path, run_dir = path, os.path.dirname(os.path.dirname(os.path.abspath(path)))
        state = checkpoint.load(path, device, what="model file or checkpoint")
        if state.get("format") == FORMAT:
            return _from_model_file(state, path)
    else:
        run_dir, ckpt_path = checkpoint.resolve_checkpoint(path, which)
        state = checkpoint.load(ckpt_path, device)
    if "model" not in state or "config" not in state:
        raise S2SError(f"{ckpt_path} is neither an s2s checkpoint nor an s2s model file (no model or config inside)")
    tokenizer_dir = run_dir if os.path.isdir(run_dir) else os.path.dirname(ckpt_path)
    return ModelSource(
        weights=state["model"],
        config=state["config"],
        tokenizers=load_tokenizers(tokenizer_dir),
        origin=run_dir,
        checkpoint_path=ckpt_path,
        checkpoint_state={k: v for k, v in state.items() if k not in ("model", "optimizer", "trained_model")},
    )


def model_file_payload(
    source: ModelSource, storage: str, card: dict[str, Any], config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The model file's contents for `source`, with weights stored in `storage` precision."""
    if storage not in STORAGES:
        raise S2SError(f"precision={storage} must be one of {', '.join(STORAGES)}")
    weights, scales = store_weights(source.weights, storage)
    protos = tokenizer_protos(source.tokenizers)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config if config is not None else source.config,
        "weights": weights,
        "scales": scales,
        "storage": storage,
        "tokenizers": protos,
        "card": card,
        "checksum": payload_checksum(weights, scales, protos),
    }


def write_model_file(payload: dict[str, Any], path: str) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    checkpoint.save_atomic(payload, path, what="model file")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # a file to hand on: readable as any new file is, not private like mkstemp's


def source_from_payload(payload: dict[str, Any], origin: str) -> ModelSource:
    """A ModelSource for a model file's contents (the weights back in fp32)."""
    return ModelSource(
        weights=restore_weights(payload["weights"], payload["scales"]),
        config=payload["config"],
        tokenizers=tokenizers_from_protos(payload["tokenizers"]),
        origin=origin,
        checkpoint_path=origin,
        card=payload["card"],
    )


def _from_model_file(state: dict[str, Any], path: str) -> ModelSource:
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        made_by = state.get("card", {}).get("s2s_version", "an unknown version") if isinstance(state, dict) else "?"
        raise S2SError(
            f"{path} is a model file of format version {version} (made by s2s {made_by}); "
            f"this s2s reads versions up to {FORMAT_VERSION}: upgrade s2s"
        )
    missing = [k for k in PAYLOAD_KEYS if k not in state]
    if missing:
        raise S2SError(f"{path} is a damaged model file: it lacks {', '.join(missing)}")
    if payload_checksum(state["weights"], state["scales"], state["tokenizers"]) != state["checksum"]:
        raise S2SError(f"{path} is a damaged model file: its checksum does not match its contents")
    return source_from_payload(state, path)


def store_weights(
    weights: dict[str, torch.Tensor], storage: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Weights in the storage precision, and the per-row scales of those stored as int8.

    int8 is symmetric per row (per output unit): row r is round(w[r] / s[r]) with s[r] = max|w[r]| / 127.
    Only floating tensors of at least INT8_MIN_ELEMENTS elements are quantized.
    """
    stored: dict[str, torch.Tensor] = {}
    scales: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        tensor = tensor.detach().cpu()
        if not tensor.is_floating_point():
            stored[name] = tensor.clone()
        elif storage == "bf16":
            stored[name] = tensor.to(torch.bfloat16)
        elif storage == "int8" and tensor.dim() >= 2 and tensor.numel() >= INT8_MIN_ELEMENTS:
            rows = tensor.float().reshape(tensor.size(0), -1)  # (R, C)
            scale = rows.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # (R,)
            stored[name] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(tensor.shape)
            scales[name] = scale
        else:
            stored[name] = tensor.float().clone()
    return stored, scales


def restore_weights(stored: dict[str, torch.Tensor], scales: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp32 weights from their stored form (int8 rows times their scales)."""
    weights = {}
    for name, tensor in stored.items():
        if name in scales:
            rows = tensor.reshape(tensor.size(0), -1).float() * scales[name][:, None]
            weights[name] = rows.reshape(tensor.shape)
        else:
            weights[name] = tensor.float() if tensor.is_floating_point() else tensor
    return weights


def payload_checksum(
    weights: dict[str, torch.Tensor], scales: dict[str, torch.Tensor], protos: dict[str, bytes]
) -> str:
    digest = hashlib.sha256()
    for group in (weights, scales):
        for name in sorted(group):
            digest.update(name.encode())
            digest.update(group[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    for name in sorted(protos):
        digest.update(name.encode())
        digest.update(protos[name])
    return digest.hexdigest()
