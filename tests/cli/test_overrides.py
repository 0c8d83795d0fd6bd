"""Tests for command-line override checking (s2s.arguments for training, s2s.arguments for translate/evaluate)."""

from __future__ import annotations

import pytest

from s2s.arguments import check_overrides, config_keys, group_options, parse_overrides
from s2s.commands.translate import USAGE, TranslateOptions
from s2s.config import SearchConfig
from s2s.decoding.loading import override_search
from s2s.errors import S2SError

# ---------------------------------------------------------------- training overrides (Hydra syntax)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["model.decoder.cell=gru"],
        ["optim.lr=5e-4"],
        ["optim.lr=1"],  # an int is a valid float
        ["data=multi30k"],
        ["model=small", "optim=adamw", "search=beam"],
        ["model.decoder.cell=gru,lstm"],  # a sweep
        ["model=small,base"],  # a sweep over group options
        ["hydra.run.dir=x"],
        ["hydra/job_logging=disabled"],
        ["+extra.key=1", "~seed"],  # additions and deletions are Hydra's business
        ["--multirun", "model.decoder.attention=luong_general", "-m"],
        ["seed=7", "device=cpu", "trainer.resume=null", "trainer.resume=auto"],
        ["data.subword.vocab_size=100", "data.subword.model_type=bpe", "optim.betas=[0.9,0.98]"],
        ["model.encoder.cell=peephole_lstm", "trainer.progress_bar=false", "model.tie_target_embeddings=true"],
    ],
)
def test_valid_overrides_pass(args):
    check_overrides(args)


def test_every_config_key_is_known():
    keys = config_keys()
    for key in ("model.decoder.cell", "data.subword.vocab_size", "optim.lr", "trainer.resume", "seed", "search.top_k"):
        assert key in keys
    assert "model.decoder" in keys and "data.subword" in keys
    assert len(keys) == len(set(keys))


def test_group_options_list_the_yaml_files():
    assert {"base", "small"} <= set(group_options("model"))
    assert {"dates", "multi30k"} <= set(group_options("data"))
    assert group_options("no-such-group") == []


@pytest.mark.parametrize(
    "arg,expected",
    [
        ("model.decoder.cel=gru", "model.decoder.cell"),
        ("optim.learning_rate=1e-3", None),  # no close match needed, but it must be rejected
        ("model.decodr.hidden_size=8", "model.decoder.hidden_size"),
        ("trainer.max_step=10", "trainer.max_steps"),
    ],
)
def test_unknown_key_is_rejected_with_suggestion(arg, expected):
    key = arg.split("=")[0]
    with pytest.raises(S2SError) as info:
        check_overrides(["model.decoder.cell=gru", arg])
    message = str(info.value)
    assert repr(key) in message
    if expected is not None:
        assert repr(expected) in message
    assert "\n" not in message


def test_unknown_top_level_key_is_rejected():
    with pytest.raises(S2SError, match="'foo'"):
        check_overrides(["foo=bar"])


@pytest.mark.parametrize(
    "arg,key",
    [
        ("optim.lr=abc", "optim.lr"),
        ("optim.lr=[1,2]", "optim.lr"),
        ("model.decoder.cell=transformer", "model.decoder.cell"),
        ("model.decoder.attention=global", "model.decoder.attention"),
        ("data.max_tokens=1.5", "data.max_tokens"),
        ("seed=abc", "seed"),
        ("trainer.progress_bar=maybe", "trainer.progress_bar"),
        ("model.decoder=lstm", "model.decoder"),  # a whole section is not a scalar
    ],
)
def test_wrong_type_is_rejected(arg, key):
    with pytest.raises(S2SError, match=f"bad value for {key}"):
        check_overrides([arg])


def test_enum_error_lists_the_choices():
    with pytest.raises(S2SError) as info:
        check_overrides(["model.decoder.cell=transformer"])
    assert "gru" in str(info.value) and "lstm" in str(info.value)


@pytest.mark.parametrize("arg", ["model=huge", "data=wmt99", "optim=sgd", "model=small,huge"])
def test_unknown_group_option_is_rejected(arg):
    group, _, value = arg.partition("=")
    with pytest.raises(S2SError) as info:
        check_overrides([arg])
    message = str(info.value)
    assert f"unknown {group} config" in message
    for option in group_options(group):
        assert option in message  # says what there is


def test_unknown_group_option_gets_suggestion():
    with pytest.raises(S2SError, match="did you mean 'small'"):
        check_overrides(["model=smal"])


def test_unparsable_override_is_rejected():
    with pytest.raises(S2SError, match="cannot parse"):
        check_overrides(["model.decoder.cell=[gru"])


def test_bad_value_inside_a_sweep_is_rejected():
    with pytest.raises(S2SError, match="model.decoder.cell"):
        check_overrides(["model.decoder.cell=gru,transformer"])


# ---------------------------------------------------------------- translate/evaluate options


def test_parse_overrides_defaults_and_values():
    options, search = parse_overrides([], TranslateOptions, USAGE)
    assert options == TranslateOptions()
    assert search == []
    options, search = parse_overrides(
        ["run=outputs/x", "checkpoint=last", "device=cpu", "chunk_lines=5", "scores=true"], TranslateOptions, USAGE
    )
    assert isinstance(options, TranslateOptions)
    assert options == TranslateOptions(model=["outputs/x"], checkpoint="last", device="cpu", chunk_lines=5, scores=True)
    assert search == []


def test_parse_overrides_splits_search_keys():
    options, search = parse_overrides(
        ["search.beam_size=5", "chunk_lines=3", "search.length_penalty=0.6"], TranslateOptions, USAGE
    )
    assert options.chunk_lines == 3
    assert search == ["beam_size=5", "length_penalty=0.6"]
    applied = override_search(SearchConfig(), search)
    assert applied.beam_size == 5 and applied.length_penalty == pytest.approx(0.6)
    assert applied.n_best == SearchConfig().n_best


@pytest.mark.parametrize(
    "arg,suggestion",
    [("beam_size=5", "search.beam_size"), ("chunk_line=5", "chunk_lines"), ("search.beam=4", "search.beam_size")],
)
def test_parse_overrides_unknown_key(arg, suggestion):
    with pytest.raises(S2SError) as info:
        parse_overrides([arg], TranslateOptions, USAGE)
    assert repr(arg.split("=")[0]) in str(info.value)
    assert repr(suggestion) in str(info.value)


@pytest.mark.parametrize("arg", ["chunk_lines=abc", "chunk_lines=1.5", "scores=maybe"])
def test_parse_overrides_wrong_type(arg):
    with pytest.raises(S2SError, match="bad option"):
        parse_overrides([arg], TranslateOptions, USAGE)


def test_parse_overrides_repeats_list_options_and_refuses_repeated_scalars():
    from s2s.commands.export import ExportOptions

    options, _ = parse_overrides(["--model", "a", "--run", "b", "model=c"], TranslateOptions, USAGE)
    assert options.model == ["a", "b", "c"]  # list-typed: every value, in order
    with pytest.raises(S2SError, match="--chunk-lines is given twice"):
        parse_overrides(["--chunk-lines", "5", "--chunk-lines", "6"], TranslateOptions, USAGE)
    with pytest.raises(S2SError, match=r"--run is given twice: this command takes one value \(ensembles"):
        parse_overrides(["--model", "a", "--run", "b"], ExportOptions, "usage")


def test_parse_overrides_requires_key_value():
    with pytest.raises(S2SError, match="key=value"):
        parse_overrides(["outputs/run"], TranslateOptions, USAGE)


@pytest.mark.parametrize("override", ["beam_size=abc", "sampling=maybe", "top_k=1.5"])
def test_search_override_wrong_type(override):
    # parse_overrides passes search.* through; they are type-checked when applied to the run's config
    _, search = parse_overrides(["search." + override], TranslateOptions, USAGE)
    with pytest.raises(S2SError, match="bad search override"):
        override_search(SearchConfig(), search)


def test_help_prints_usage_and_exits(capsys):
    with pytest.raises(SystemExit) as info:
        parse_overrides(["chunk_lines=abc", "--help"], TranslateOptions, USAGE)
    assert info.value.code == 0
    assert "search.KEY=VALUE" in capsys.readouterr().out
