"""Precision choice: `auto` follows the hardware, `bf16` where it cannot run is a clear error."""

import pytest
import torch

from s2s import precision
from s2s.config import Precision
from s2s.decoding.loading import load_translator
from s2s.errors import S2SError
from s2s.precision import bf16_runs, resolve_precision
from tests.conftest import TINY, make_config

CPU = torch.device("cpu")


def _cpu_with(monkeypatch, avx512_bf16: bool, amx: bool, onednn_bf16: bool, bf16_speedup: float = 4.0) -> None:
    monkeypatch.setattr(precision.torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(precision.torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: onednn_bf16)
    monkeypatch.setattr(precision, "bf16_matmul_speedup", lambda: bf16_speedup)


@pytest.mark.parametrize(
    "avx512_bf16, amx, onednn, auto",
    [
        (True, False, True, "bf16"),
        (False, True, True, "bf16"),
        (False, False, True, "fp32"),
        (False, False, False, "fp32"),
    ],
)
def test_auto_picks_bf16_only_where_it_is_native(monkeypatch, avx512_bf16, amx, onednn, auto):
    _cpu_with(monkeypatch, avx512_bf16, amx, onednn)
    assert resolve_precision(Precision.auto, CPU, "trainer.precision").value == auto
    assert resolve_precision(Precision.fp32, CPU, "trainer.precision") == Precision.fp32


@pytest.mark.parametrize(
    "speedup, auto", [(0.56, "fp32"), (1.2, "fp32"), (precision.BF16_MIN_SPEEDUP, "bf16"), (4.2, "bf16")]
)
def test_auto_takes_bf16_only_where_it_measures_faster(monkeypatch, speedup, auto):
    """AVX512-BF16 without AMX can multiply slower in bf16 than in fp32 (0.56x measured): auto keeps fp32 there."""
    _cpu_with(monkeypatch, avx512_bf16=True, amx=False, onednn_bf16=True, bf16_speedup=speedup)
    assert resolve_precision(Precision.auto, CPU, "trainer.precision").value == auto
    assert resolve_precision(Precision.auto, CPU, "search.precision", decoding=True).value == auto
    assert resolve_precision(Precision.bf16, CPU, "trainer.precision") == Precision.bf16  # asked for, it is still given


@pytest.mark.skipif(not bf16_runs(CPU), reason="this CPU has no bf16 kernels")
def test_the_measurement_is_real_and_leaves_the_random_state_alone():
    precision.bf16_matmul_speedup.cache_clear()
    state = torch.get_rng_state()
    speedup = precision.bf16_matmul_speedup()
    assert 0.0 < speedup < 100.0
    assert torch.equal(torch.get_rng_state(), state)
    assert precision.bf16_matmul_speedup() == speedup  # measured once per process


def test_bf16_runs_where_onednn_emulates_it(monkeypatch):
    _cpu_with(monkeypatch, avx512_bf16=False, amx=False, onednn_bf16=True)
    assert resolve_precision(Precision.bf16, CPU, "trainer.precision") == Precision.bf16


def test_bf16_without_kernels_is_a_one_line_error_naming_the_option(monkeypatch):
    _cpu_with(monkeypatch, avx512_bf16=False, amx=False, onednn_bf16=False)
    with pytest.raises(S2SError, match=r"search\.precision=bf16 needs .* use search\.precision=fp32") as error:
        resolve_precision(Precision.bf16, CPU, "search.precision")
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_training_and_decoding_refuse_bf16_without_kernels(monkeypatch, trained_run, tmp_path):
    _cpu_with(monkeypatch, avx512_bf16=False, amx=False, onednn_bf16=False)
    from s2s.commands.train import run

    with pytest.raises(S2SError, match="trainer.precision=bf16"):
        run(make_config(*TINY, "trainer.precision=bf16"), str(tmp_path / "run"))
    with pytest.raises(S2SError, match="search.precision=bf16"):
        load_translator(trained_run, "best", "cpu", ["precision=bf16"])
    translator, _, _ = load_translator(trained_run, "best", "cpu", ["precision=auto"])
    assert {p.dtype for p in translator.model.parameters()} == {torch.float32}


def test_this_machine_reports_consistently():
    """Native bf16 implies that bf16 runs; the check itself never fails."""
    assert bf16_runs(CPU) or not precision.bf16_native(CPU)
