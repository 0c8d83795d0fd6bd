"""Typed configuration: the one place where every s2s option is defined.

Each dataclass backs one Hydra config group (s2s/conf/data, s2s/conf/model,
s2s/conf/optim, s2s/conf/search) or a section of s2s/conf/config.yaml. Hydra
validates the composed YAML against these classes, so a misspelt key or a wrong
type fails at start-up. Every field carries a one-line comment saying what it does
(docs/configuration.md is generated from them).

The defaults are those of `python -m s2s.train` with no overrides (data=dates,
model=small, optim=adam, search=greedy), so `Config()` in Python and the command
line start from the same run; tests/test_config_defaults.py keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf


class Cell(str, Enum):
    lstm = "lstm"  # long short-term memory
    gru = "gru"  # gated recurrent unit
    rnn = "rnn"  # plain tanh (Elman) RNN
    peephole_lstm = "peephole_lstm"  # LSTM whose gates also see the cell state (slower)


class Attention(str, Enum):
    none = "none"  # decoder sees only the encoder summary h_T, fed at every step
    bahdanau = "bahdanau"  # additive: v^T tanh(W_k k + W_q q)
    luong_dot = "luong_dot"  # multiplicative: q^T k (keys projected to the decoder size)
    luong_general = "luong_general"  # multiplicative: q^T W k


class CorpusFormat(str, Enum):
    dates = "dates"  # the embedded generated task (no files needed)
    text = "text"  # {split}.{src_lang} / {split}.{tgt_lang}, one sentence per line
    tsv = "tsv"  # {split}.tsv: source<TAB>target per line
    jsonl = "jsonl"  # {split}.jsonl: {"<src_lang>": ..., "<tgt_lang>": ...} per line
    hub = "hub"  # a HuggingFace hub dataset with a `translation` column (online users)


class SubwordModel(str, Enum):
    unigram = "unigram"
    bpe = "bpe"
    char = "char"


class Optimizer(str, Enum):
    adam = "adam"
    adamw = "adamw"


class Precision(str, Enum):
    fp32 = "fp32"  # full precision
    bf16 = "bf16"  # bfloat16 (CUDA, or a CPU with AVX512; fast with AVX512-BF16 or AMX); an error elsewhere
    auto = "auto"  # bf16 where the device has native bf16 (CUDA, AVX512-BF16, AMX), else fp32
    int8 = "int8"  # decoding on a CPU only: int8 weights for the matrix multiplies (s2s.model.int8)


class Scheduler(str, Enum):
    none = "none"  # constant learning rate (after any warm-up)
    plateau = "plateau"  # multiply lr by `factor` when the validation metric stalls
    linear = "linear"  # constant until `decay_start` of the budget, then linear decay to min_lr at its end


class SortFirst(str, Enum):
    target = "target"  # training batches grouped by target length, then source length (least decoder padding)
    source = "source"  # by source length, then target length


@dataclass
class SubwordConfig:
    model_type: SubwordModel = SubwordModel.unigram  # sentencepiece algorithm
    vocab_size: int = 256  # pieces per vocabulary (a soft limit for small corpora: sentencepiece may make fewer)
    joint: bool = True  # one vocabulary for source and target, else one each
    character_coverage: float = 1.0  # fraction of characters covered by the model
    max_sentences: int = 1_000_000  # train sentencepiece on at most this many sentences
    # subword regularization: > 0 trains each epoch on a fresh random segmentation of the training
    # text (unigram: the sampling smoothing, smaller = more varied; bpe: the BPE-dropout probability)
    sampling_alpha: float = 0.0


@dataclass
class DataConfig:
    name: str = "dates"  # a label for logs and reports
    format: CorpusFormat = CorpusFormat.dates  # where and how the corpus is read
    dir: Optional[str] = None  # directory holding local corpus files
    hub_name: Optional[str] = None  # hub dataset name, used when format=hub
    hub_config: Optional[str] = None  # hub dataset configuration name, if any
    src_lang: str = "text"  # source language code (file suffix / JSON key)
    tgt_lang: str = "iso"  # target language code
    train_split: str = "train"  # split (file stem) used for training
    valid_split: str = "valid"  # split used for validation and model selection
    test_split: str = "test"  # split used by `s2s.evaluate` by default
    subword: SubwordConfig = field(default_factory=SubwordConfig)
    max_len: int = 50  # drop training pairs whose either side has more subwords
    lowercase: bool = False  # lowercase text before tokenization
    max_tokens: int = 3000  # token budget per batch (padded source or target, whichever is larger)
    sort_first: SortFirst = SortFirst.target  # which side's length groups the training batches first: target | source
    both_directions: bool = (
        False  # also train tgt->src on the swapped pairs: one model, sources tagged <2lang> (joint vocabulary)
    )
    reverse_fraction: float = (
        1.0  # both_directions: the share of the training pairs also read swapped (a seeded random subset)
    )
    generated_train_size: int = 20000  # format=dates: training examples
    generated_valid_size: int = 500  # format=dates: validation examples
    generated_test_size: int = 1000  # format=dates: test examples


@dataclass
class EncoderConfig:
    cell: Cell = Cell.lstm  # recurrent cell of the bidirectional encoder
    hidden_size: int = 128  # per direction
    num_layers: int = 1  # stacked layers
    dropout: float = 0.1  # between layers and on the outputs


@dataclass
class DecoderConfig:
    cell: Cell = Cell.lstm  # decoder cell: lstm or gru (rnn works too)
    hidden_size: int = 128  # decoder state size
    num_layers: int = 1  # stacked layers
    dropout: float = 0.1  # between layers and before the output projection
    attention: Attention = Attention.bahdanau  # how the decoder reads the source
    input_feeding: bool = True  # feed the previous attentional vector with the next input
    layer_norm: bool = False  # layer-normalized cells (Ba et al., 2016): lstm and gru only
    feed_dropout: bool = False  # input feeding: the fed-back attentional vector gets the output layer's dropout mask


@dataclass
class ModelConfig:
    embedding_size: int = 64  # source and target embedding width
    embedding_dropout: float = 0.1  # dropout on embeddings
    word_dropout: float = 0.0  # training: drop whole source and target input tokens (embedding zeroed)
    tie_target_embeddings: bool = False  # share target embedding and output projection
    share_embeddings: bool = False  # one embedding matrix for source and target (needs a joint vocabulary)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


@dataclass
class OptimConfig:
    name: Optimizer = Optimizer.adam  # adam or adamw
    lr: float = 1e-3  # peak learning rate
    betas: tuple[float, float] = (0.9, 0.999)  # Adam moment coefficients
    weight_decay: float = 0.0  # L2 (adam) or decoupled (adamw) weight decay
    clip_norm: float = 1.0  # clip the global gradient norm to this (0 disables)
    accumulate: int = 1  # batches per update on each rank (effective batch: max_tokens x accumulate x ranks)
    label_smoothing: float = 0.1  # label-smoothed cross-entropy; padding is ignored
    teacher_forcing: float = 1.0  # probability of feeding the gold token (<1: scheduled sampling)
    warmup_steps: int = 0  # linear warm-up from 0 to lr over this many steps
    scheduler: Scheduler = Scheduler.plateau  # learning-rate schedule after warm-up
    plateau_factor: float = 0.5  # plateau: lr multiplier when the metric stalls
    plateau_patience: int = 2  # plateau: validations without improvement before decaying
    min_lr: float = 1e-5  # plateau: lower bound on the learning rate; linear: the rate at the end of the budget
    decay_start: float = (
        0.5  # linear: fraction of the budget (max_steps, max_epochs or max_minutes) before the decay begins
    )
    ema_decay: float = (
        0.0  # validate, translate with an exponential moving average of the weights (e.g. 0.999; 0 = off)
    )
    rdrop_alpha: float = (
        0.0  # R-Drop: each batch twice through dropout, + alpha/2 x (KL(p||q) + KL(q||p)) per pair (0 = off)
    )


@dataclass
class SearchConfig:
    beam_size: int = 1  # 1 = greedy search
    length_penalty: float = 1.0  # GNMT alpha: score / ((5 + len) / 6) ** alpha (beam only)
    max_len_a: float = 1.5  # output limit: a * source_length + b tokens
    max_len_b: int = 10  # output limit: a * source_length + b tokens
    n_best: int = 1  # hypotheses returned per sentence (<= beam_size)
    sampling: bool = False  # sample instead of searching
    temperature: float = 1.0  # sampling: softmax temperature
    top_k: int = 0  # sampling: keep only the k most likely tokens (0 = all)
    top_p: float = 1.0  # sampling: keep the fewest most likely tokens whose probabilities sum to p (1 = all)
    batch_size: int = 64  # sentences per decoding batch
    precision: Precision = (
        Precision.fp32
    )  # fp32, bf16 weights and activations (log-probabilities stay fp32), auto, or int8 (CPU)
    # beam: rerank the beam by + weight * log p(source | candidate) per source subword
    # (data.both_directions models; 0 = off)
    reverse_weight: float = 0.0


@dataclass
class TrainerConfig:
    max_steps: int = 2000  # stop after this many updates (0 = no limit)
    max_epochs: int = 0  # stop after this many passes over the data (0 = no limit)
    max_minutes: float = 0.0  # stop after this much wall-clock time, summed over resumptions (0 = no limit)
    valid_every: int = 500  # validate (and checkpoint) every N updates (0 = never by update count)
    valid_each_epoch: bool = True  # also validate at the end of every epoch (false: only every valid_every updates)
    valid_max_sentences: int = 0  # decode at most this many validation sentences (0 = all)
    early_stopping_metric: str = "exact_match"  # bleu, chrf, exact_match, loss or ppl
    early_stopping_patience: int = 0  # stop after N validations without improvement (0 = never)
    log_every: int = 100  # write a log line every N updates
    keep_checkpoints: int = (
        0  # also keep the last N validations' weights as checkpoints/step-N.pt, for `python -m s2s.average` (0 = none)
    )
    resume: Optional[str] = None  # "auto": continue this run dir; or a run dir / checkpoint to continue
    init_from: Optional[str] = None  # fine-tune: start from this run dir / checkpoint's weights (and vocabulary)
    reset_optimizer: bool = True  # fine-tune: fresh optimizer state instead of the checkpoint's
    reset_scheduler: bool = True  # fine-tune: fresh learning-rate schedule instead of the checkpoint's
    reset_best: bool = True  # fine-tune: forget the checkpoint's best validation score
    max_bad_steps: int = 10  # stop after this many non-finite losses or gradients in a row
    tensorboard: bool = True  # write TensorBoard scalars to <run>/tensorboard
    precision: Precision = (
        Precision.fp32
    )  # fp32, bf16 autocast for the forward pass, or auto (bf16 where native and a bf16 multiply measures 1.5x fp32)
    progress_bar: bool = True  # tqdm progress bar (only shown when stderr is a terminal)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 1234  # seeds python, torch and batch shuffling
    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:N
    threads: int = 0  # torch intra-op threads on CPU (0 = torch's default)


def register_configs() -> None:
    """Register the schema so that s2s/conf/config.yaml is validated against `Config`."""
    ConfigStore.instance().store(name="s2s_schema", node=Config)


def config_from_dict(values: dict) -> Config:
    """Rebuild a typed Config from the plain dict stored in a checkpoint."""
    merged = OmegaConf.merge(OmegaConf.structured(Config), values)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def config_as_dict(cfg: Config) -> dict:
    """The config as plain types (enums as strings), safe inside a weights_only checkpoint or model file."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)  # type: ignore[return-value]
