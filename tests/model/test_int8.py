"""int8 decoding on a CPU (s2s.model.int8, search.precision=int8)."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from s2s.config import Attention, Cell, Precision, SearchConfig
from s2s.data.batching import make_batch
from s2s.decoding.loading import load_translator
from s2s.decoding.search import beam_search, greedy
from s2s.errors import S2SError
from s2s.model.int8 import Int8Linear, Int8Weight, int8_copy
from s2s.precision import resolve_precision
from s2s.special_tokens import BOS
from tests.conftest import TINY, make_config, run_cli
from tests.helpers import half_trained_model, random_ids

COMBOS = [
    {},  # BiLSTM, LSTM decoder, Bahdanau attention with input feeding
    {"decoder_cell": Cell.gru, "attention": Attention.luong_general},
    {"cell": Cell.rnn, "decoder_cell": Cell.peephole_lstm, "attention": Attention.none},
    {"layers": 2, "attention": Attention.bahdanau},
    {"layers": 2, "layer_norm": True},
    {"decoder_cell": Cell.gru, "layer_norm": True},
]


def test_int8_weight_stays_within_its_quantization_error():
    torch.manual_seed(0)
    weight, bias, x = torch.randn(70, 40) * 0.2, torch.randn(70), torch.randn(3, 5, 40)
    out = Int8Weight(weight, bias)(x)  # (3, 5, 70)
    exact = nn.functional.linear(x, weight, bias)
    # per-row weight steps s_n = max|W_n| / 127; input codes 7-bit over [min(x), max(x)] (and 0)
    weight_step = weight.abs().amax(dim=1) / 127  # (N,)
    input_step = (x.max().clamp(min=0) - x.min().clamp(max=0)) / 127
    bound = x.abs().sum(-1, keepdim=True) * weight_step / 2 + input_step / 2 * (
        weight.abs().sum(1) + weight_step * x.size(-1) / 2
    )
    assert out.shape == exact.shape and out.dtype == torch.float32
    assert ((out - exact).abs() <= bound + 1e-4).all()
    assert not torch.equal(out, exact)  # really int8, not an fp32 fallback


@pytest.mark.parametrize("combo", range(len(COMBOS)))
def test_int8_copy_converts_the_multiplies_and_leaves_the_model_alone(combo):
    model = half_trained_model(seed=combo, steps=5, **COMBOS[combo]).eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    quantized = int8_copy(model)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert all(
        isinstance(p, nn.Parameter)
        for cell in model.decoder.cells
        for p in vars(cell)["_parameters"].values()
        if p is not None
    )
    decoder = quantized.decoder
    assert isinstance(decoder.output, Int8Linear) and isinstance(decoder.combine, Int8Linear)
    linear_left = [name for name, module in decoder.named_modules() if isinstance(module, nn.Linear)]
    assert linear_left in ([], ["attention.energy"])  # a single output: not worth int8
    for cell in decoder.cells:
        weights = [getattr(cell, name, None) for name in ("weight_ahead", "weight_step", "weight_hidden")]
        assert not any(isinstance(w, torch.Tensor) for w in weights)


@pytest.mark.slow
@pytest.mark.parametrize("combo", range(len(COMBOS)))
def test_int8_decoding_follows_fp32(combo):
    model = half_trained_model(seed=combo, steps=40, **COMBOS[combo]).eval()
    quantized = int8_copy(model)
    batch = make_batch(random_ids(random.Random(combo), 30, min_len=2, max_len=7), None, range(30))
    with torch.inference_mode():
        fp32, int8 = greedy(model, batch, SearchConfig()), greedy(quantized, batch, SearchConfig())
        first = torch.full((30,), BOS)
        steps = [
            m.step(first, *reversed(m.encode(batch.src, batch.src_lengths)))[0] for m in (model, quantized)
        ]  # (30, V) each
    assert (steps[0] - steps[1]).abs().max() < 0.25  # about 0.07 here; a wrong weight or bias gives whole units
    assert sum(a.tokens == b.tokens for a, b in zip(fp32, int8)) >= 25


@pytest.mark.slow
def test_int8_beam_size_one_equals_int8_greedy():
    quantized = int8_copy(half_trained_model(seed=0, steps=40).eval())
    batch = make_batch(random_ids(random.Random(5), 12, min_len=2, max_len=7), None, range(12))
    with torch.inference_mode():
        beam = beam_search(quantized, batch, SearchConfig(beam_size=1))
        ref = greedy(quantized, batch, SearchConfig())
    assert [h[0].tokens for h in beam] == [h.tokens for h in ref]


def test_int8_is_for_decoding_on_a_cpu_only():
    with pytest.raises(S2SError, match=r"trainer\.precision=int8 is for decoding only"):
        resolve_precision(Precision.int8, torch.device("cpu"), "trainer.precision")
    with pytest.raises(S2SError, match=r"search\.precision=int8 runs on CPUs only"):
        resolve_precision(Precision.int8, torch.device("cuda"), "search.precision", decoding=True)
    assert resolve_precision(Precision.int8, torch.device("cpu"), "search.precision", decoding=True) == Precision.int8


@pytest.mark.slow
def test_translator_with_int8_keeps_the_run_model_fp32(trained_run):
    translator, _, _ = load_translator(trained_run, "best", "cpu", ["precision=int8"])
    assert isinstance(translator.model.decoder.output, Int8Linear)
    fp32, _, _ = load_translator(trained_run, "best", "cpu")
    sentences = ["3 March 1998", "", "Dienstag, 9. November 1989"]
    outputs = translator.translate_detailed(sentences)
    assert len(outputs) == 3 and outputs[1].text == "" and all(o.text for o in (outputs[0], outputs[2]))
    assert isinstance(fp32.model.decoder.output, nn.Linear)


def test_training_refuses_int8_before_it_starts(tmp_path):
    from s2s.commands.train import run

    with pytest.raises(S2SError, match=r"trainer\.precision=int8 is for decoding only"):
        run(make_config(*TINY, "trainer.precision=int8"), str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_translate_command_with_int8(trained_run, tmp_path):
    lines = b"3 March 1998\n\n4 May 2001\n"
    result = run_cli(
        "s2s.translate",
        [f"--run={trained_run}", "--precision", "int8", "--beam-size", "3"],
        cwd=str(tmp_path),
        stdin=lines,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().split("\n")
    assert len(out) == 4 and out[1] == "" and out[0] and out[2] and out[3] == ""
    assert result.stderr == b""  # no deprecation warnings from torch's quantized tensors
