"""The measured parts of scripts/benchmark.py: the reference shape, training and decoding speed, profiling.

`python -m scripts.benchmark` runs each part in a child process (`--part=...`) so that peak RSS
is per part, and `--profile` in its own process; see that module's docstring for what is measured.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----- shared pieces ------------------------------------------------------------------------------
def reference_config(data_dir: str):
    from omegaconf import OmegaConf

    from s2s.arguments import CONF_DIR
    from s2s.config import Attention, Cell, Config, CorpusFormat, DataConfig, ModelConfig, SubwordConfig

    cfg = Config()
    cfg.data = DataConfig(
        name="multi30k",
        format=CorpusFormat.text,
        dir=data_dir,
        src_lang="de",
        tgt_lang="en",
        valid_split="val",
        test_split="test_2016_flickr",
        subword=SubwordConfig(vocab_size=8000, joint=True),
        max_len=100,
        max_tokens=2000,
    )
    base = OmegaConf.load(os.path.join(CONF_DIR, "model", "base.yaml"))  # the reference shape: model=base
    cfg.model = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), base))
    cfg.model.encoder.cell, cfg.model.encoder.hidden_size = Cell.lstm, 256
    cfg.model.decoder.cell, cfg.model.decoder.hidden_size, cfg.model.decoder.attention = (
        Cell.lstm,
        512,
        Attention.bahdanau,
    )
    cfg.trainer.tensorboard = False
    cfg.trainer.progress_bar = False
    return cfg


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def flops_per_token(cfg, src_vocab: int, tgt_vocab: int, src_per_tgt: float, mean_src_len: float) -> float:
    """Forward matmul FLOPs per target token (2*m*n*k each), the source side scaled by src/tgt length."""
    m, enc, dec = cfg.model, cfg.model.encoder, cfg.model.decoder
    embed, hidden_enc, hidden_dec = m.embedding_size, enc.hidden_size, dec.hidden_size
    gates = {"lstm": 4, "peephole_lstm": 4, "gru": 3, "rnn": 1}
    context = 2 * hidden_enc
    feed = embed if m.tie_target_embeddings else hidden_dec
    macs_src = 0.0
    width = embed
    for _ in range(enc.num_layers):  # both directions
        macs_src += 2 * gates[enc.cell.value] * hidden_enc * (width + hidden_enc)
        width = context
    attention = dec.attention.value
    if attention in ("bahdanau", "luong_general"):
        macs_src += context * hidden_dec  # keys projected once per source token
    step_input = (
        embed + (feed if dec.input_feeding and attention != "none" else 0) + (context if attention == "none" else 0)
    )
    macs_tgt = 0.0
    width = step_input
    for _ in range(dec.num_layers):
        macs_tgt += gates[dec.cell.value] * hidden_dec * (width + hidden_dec)
        width = hidden_dec
    if attention == "bahdanau":
        macs_tgt += hidden_dec * hidden_dec + mean_src_len * hidden_dec + mean_src_len * context
    elif attention != "none":
        macs_tgt += mean_src_len * hidden_dec + mean_src_len * context
    macs_tgt += (hidden_dec + context) * feed + feed * tgt_vocab  # combine, output projection
    return 2.0 * (macs_tgt + src_per_tgt * macs_src)


def matmul_peak_gflops(dtype_name: str, trials: int = 7, size: int = 2048) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    best = float("inf")
    for _ in range(trials):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


# ----- parts (each in its own process) ----------------------------------------------------------
def make_trainer(args: argparse.Namespace, precision: str, run_dir: str):
    """A Trainer in `run_dir` and its config: the reference shape (--model reference) or --run's model."""
    import torch

    from s2s.config import Precision, config_from_dict
    from s2s.training.trainer import Trainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "reference":
        cfg = reference_config(args.data_dir)
        cfg.data.max_tokens = max_tokens_for(cfg, args.target_tokens, run_dir)
    else:
        cfg = config_from_dict(run_config(args.run))
        cfg.data.dir = args.data_dir
        cfg.trainer.tensorboard, cfg.trainer.progress_bar = False, False
    cfg.trainer.precision = Precision(precision)
    cfg.device = "cpu" if not torch.cuda.is_available() else "cuda"
    return Trainer(cfg, run_dir), cfg


def first_batches(trainer, count: int) -> list:
    """The first `count` batches of the first epoch, made (real Multi30k batches, in training order)."""
    return [trainer.data.train.batch(b) for b in trainer.data.train.epoch_batches(0)[:count]]


def part_train(args: argparse.Namespace, precision: str) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, cfg = make_trainer(args, precision, run_dir)
        made = first_batches(trainer, args.warmup + args.train_steps * args.repeats)
        for batch in made[: args.warmup]:
            trainer.train_step([batch])
        speeds = []
        for r in range(args.repeats):
            chunk = made[args.warmup + r * args.train_steps : args.warmup + (r + 1) * args.train_steps]
            sync()
            started = time.perf_counter()
            for batch in chunk:
                trainer.train_step([batch])
            sync()
            speeds.append(sum(b.num_tgt_tokens for b in chunk) / (time.perf_counter() - started))
        src_tokens = sum(int(b.src_lengths.sum()) - len(b.src_lengths) for b in made)
        tgt_tokens = sum(b.num_tgt_tokens for b in made)
        return {
            "tok_per_s": statistics.median(speeds),
            "batch_target_tokens": tgt_tokens / len(made),
            "max_tokens": cfg.data.max_tokens,
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "flops_per_tok": flops_per_token(
                cfg,
                trainer.data.tokenizers.src.get_piece_size(),
                trainer.data.tokenizers.tgt.get_piece_size(),
                src_tokens / tgt_tokens,
                src_tokens / sum(len(b.src_lengths) for b in made),
            )
            * 3,
            "peak_rss_mb": peak_rss_mb(),
        }


def run_config(run_dir: str) -> dict:
    """A trained run's config.yaml as a plain dict."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(os.path.join(run_dir, "config.yaml")))


def sync() -> None:
    """Wait for the GPU, if there is one, so that a timer stops when the work is done."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def max_tokens_for(cfg, target_tokens: int, run_dir: str) -> int:
    """The token budget whose batches hold `target_tokens` real target tokens on average."""
    from s2s.data.batching import token_budget_batches
    from s2s.data.pipeline import prepare_training_data

    data = prepare_training_data(cfg.data, run_dir, cfg.seed)
    src, tgt = data.train.src_lengths, data.train.tgt_lengths
    low, high = 100, 20000
    while high - low > 10:
        middle = (low + high) // 2
        batches = token_budget_batches(src, tgt, middle)
        mean = sum(int(tgt[i]) + 1 for b in batches for i in b) / len(batches)
        low, high = (middle, high) if mean < target_tokens else (low, middle)
    return high


def make_translator(args: argparse.Namespace, run_dir: str, precision: str):
    """The run's best checkpoint as a Translator (batches of 64, at most 100 output tokens) and test2016."""
    import torch

    from s2s.data.corpus import load_split
    from s2s.decoding.loading import load_translator

    torch.set_num_threads(args.threads)
    overrides = [
        "batch_size=64",
        "max_len_a=0",
        "max_len_b=100",
        "beam_size=1",
        "length_penalty=1.0",
        f"precision={precision}",
    ]
    translator, cfg, _ = load_translator(run_dir, "best", "auto", overrides)
    cfg.data.dir = args.data_dir
    test = load_split(cfg.data, cfg.data.test_split)
    return translator, list(test["src"])[: args.decode_sentences], list(test["tgt"])[: args.decode_sentences]


def part_decode(args: argparse.Namespace, run_dir: str, precision: str, with_batch_one: bool) -> dict:
    """Sentences/s decoding test2016 in batches of 64 (and one at a time), with the BLEU of the batched output."""
    from s2s.metrics import score

    translator, sources, references = make_translator(args, run_dir, precision)
    results: dict = {}
    modes = [("greedy", 1, 64, len(sources)), ("beam5", 5, 64, len(sources))]
    if with_batch_one:
        modes += [("greedy_b1", 1, 1, args.b1_sentences), ("beam5_b1", 5, 1, args.b1_sentences)]
    for name, beam, batch_size, count in modes:
        options = {"beam_size": beam, "batch_size": batch_size, "max_input_tokens": None}
        chosen = sources[:count]
        translator.translate_detailed(chosen[: max(batch_size * 2, 8)], **options)  # warm-up
        speeds = []
        for _ in range(args.repeats):
            sync()
            started = time.perf_counter()
            outputs = translator.translate_detailed(chosen, **options)
            sync()
            speeds.append(len(chosen) / (time.perf_counter() - started))
        key = name.replace("_b1", "") + "_sent_per_s" + ("_b1" if name.endswith("_b1") else "")
        results[key] = statistics.median(speeds)
        if batch_size > 1:
            results[f"{name}_bleu"] = score([o.text for o in outputs], references[:count])["bleu"]
        if name == "greedy":
            results["mean_hyp_len"] = statistics.mean(len(o.tgt_pieces) + 1 for o in outputs)
            results["mean_ref_len"] = statistics.mean(len(translator.tokenizers.tgt.encode(r)) + 1 for r in references)
    results["peak_rss_mb"] = peak_rss_mb()
    return results


# ----- profiling (in this process) --------------------------------------------------------------
def profile(args: argparse.Namespace) -> None:
    """Time the work once, run it again under torch.profiler, and print the top operators and the rate."""
    if args.profile == "train":
        if args.precision == "int8":
            raise SystemExit("error: --precision int8 is for decoding; profile training in fp32 or bf16")
        args.model = "recipe" if args.run else "reference"
        with tempfile.TemporaryDirectory() as run_dir:
            trainer, _ = make_trainer(args, args.precision, run_dir)
            made = first_batches(trainer, args.warmup + args.train_steps)
            for batch in made[: args.warmup]:
                trainer.train_step([batch])
            chunk = made[args.warmup :]
            seconds = profiled(lambda: [trainer.train_step([batch]) for batch in chunk], args)
        tokens = sum(b.num_tgt_tokens for b in chunk)
        print(f"{seconds / len(chunk) * 1000:.1f} ms per step; {tokens / seconds:.0f} target tokens/s")
        return
    run = args.run or args.reference_run
    if not run:
        raise SystemExit("error: --profile decode needs a trained run: --run RUN or --reference-run RUN")
    translator, sources, _ = make_translator(args, run, args.precision)
    translator.translate(sources[:128], beam_size=args.beam, max_input_tokens=None)  # warm-up
    seconds = profiled(lambda: translator.translate(sources, beam_size=args.beam, max_input_tokens=None), args)
    print(f"{len(sources) / seconds:.1f} sentences/s ({len(sources)} sentences, beam {args.beam}, batches of 64)")


def profiled(work, args: argparse.Namespace) -> float:
    """Seconds `work()` takes; then prints the profile of a second run (self CPU time, most first)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    sync()
    started = time.perf_counter()
    work()
    sync()
    seconds = time.perf_counter() - started
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        work()
    table = prof.key_averages(group_by_input_shape=args.shapes).table(
        sort_by="self_cpu_time_total", row_limit=args.rows
    )
    print(table)
    return seconds
