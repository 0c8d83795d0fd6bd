"""Speed benchmark on real Multi30k batches: training tokens/s and decoding sentences/s.

    python -m scripts.benchmark [--run RECIPE_RUN] [--reference-run REFERENCE_RUN] [--data-dir DIR]
    python -m scripts.benchmark --part=train-fp32 --model reference     # one part only
    python -m scripts.benchmark --profile train [--precision bf16] [--shapes]
    python -m scripts.benchmark --profile decode --reference-run RUN [--beam 5] [--precision int8]

Measures the reference shape (embeddings 256, BiLSTM 256 per direction, LSTM decoder 512
with Bahdanau attention and input feeding, joint sentencepiece vocabulary 8000) and, with
--run, a recipe's own model. Training speed uses the real training step (s2s.training.trainer);
decoding speed uses the real translator on test_2016_flickr, batches of 64 and at most 100
output tokens, and needs trained runs (--reference-run, --run) so that output lengths are
realistic. Steady state only: warm-up steps first, then several repetitions, median reported.
Decoding is measured in fp32, with bf16 weights (search.precision=bf16) and, on a CPU where
bf16 is not fast (AVX2 only, or AVX512-BF16 without AMX: what precision=auto measures), with
int8 matrix multiplies (search.precision=int8), with the BLEU of each batched output so that
speed and quality are seen together. Parts that cannot run or are left out are reported as
null: bf16 without bf16 kernels, int8 on a GPU and, to keep the benchmark within 5 minutes,
only the reduced precision that `precision=auto` would use is measured beside fp32: on a CPU
with fast bf16 (AMX) bf16 and no int8, on a CPU where bf16 runs but slowly (AVX512-BF16
without AMX) int8 decoding and, of bf16, only the reference shape's training, which the issue's
table asks for. --all-precisions measures everything that runs.
Each part runs in its own process so peak RSS is per part. The last stdout line is JSON.

--profile runs torch.profiler instead, in this process: over training steps on the same real
batches (the reference shape, or with --run that recipe's model) or over decoding test2016 in
batches of 64 (the model of --run, else of --reference-run), and prints the operators with
the most self CPU time and the step rate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from s2s.errors import user_errors_exit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = "train-fp32 | train-bf16 (with --model), decode-PRECISION=RUN | decode-PRECISION-b1=RUN (fp32, bf16, int8)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", default=os.path.join(ROOT, "..", "shared", "data", "multi30k"), help="Multi30k files"
    )
    parser.add_argument("--run", help="a trained recipe run directory (its own model is measured too)")
    parser.add_argument("--reference-run", help="a trained reference-shape run directory, for decoding speed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--train-steps", type=int, default=15, help="timed training steps per repetition")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up steps / batches")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--target-tokens", type=int, default=900, help="mean target tokens per training batch")
    parser.add_argument("--decode-sentences", type=int, default=1000, help="test sentences decoded in batches of 64")
    parser.add_argument("--b1-sentences", type=int, default=100, help="test sentences decoded one at a time")
    parser.add_argument(
        "--all-precisions",
        action="store_true",
        help="measure int8 and bf16 wherever they run (default: beside fp32 only the one precision=auto would use, "
        "and the reference shape's bf16 training)",
    )
    parser.add_argument("--part", help=f"measure one part only, in this process, and print its JSON: {PARTS}")
    parser.add_argument(
        "--model", choices=["reference", "recipe"], help="with --part=train-*: the reference shape or --run's model"
    )
    parser.add_argument(
        "--profile",
        choices=["train", "decode"],
        help="run torch.profiler over training steps or decoding instead of measuring, and print the top operators",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "int8"],
        default="fp32",
        help="with --profile: training autocast (fp32, bf16) or decoding weights (fp32, bf16, int8)",
    )
    parser.add_argument("--beam", type=int, default=1, help="with --profile decode: beam size (1 = greedy)")
    parser.add_argument("--rows", type=int, default=25, help="with --profile: operators listed")
    parser.add_argument("--shapes", action="store_true", help="with --profile: one row per operator and input shapes")
    return parser.parse_args(argv)


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
    from s2s.decoding.translator import load_translator

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


def run_part(args: argparse.Namespace, *extra: str) -> dict:
    command = [
        sys.executable,
        "-m",
        "scripts.benchmark",
        *extra,
        "--data-dir",
        args.data_dir,
        "--threads",
        str(args.threads),
        "--train-steps",
        str(args.train_steps),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--target-tokens",
        str(args.target_tokens),
        "--decode-sentences",
        str(args.decode_sentences),
        "--b1-sentences",
        str(args.b1_sentences),
    ]
    if args.run:
        command += ["--run", args.run]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode
        raise SystemExit(f"error: benchmark part {extra} failed: {last}")
    return json.loads(result.stdout.strip().splitlines()[-1])


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


def main() -> None:
    args = parse_args()
    if args.part:
        kind, _, what = args.part.partition("=")
        if kind.startswith("train"):
            print(json.dumps(part_train(args, kind.split("-")[1])))
        else:  # decode-PRECISION[-b1]=RUN
            print(json.dumps(part_decode(args, what, kind.split("-")[1], kind.endswith("-b1"))))
        return
    if not os.path.isdir(args.data_dir):
        raise SystemExit(f"error: --data-dir {args.data_dir} does not exist")
    if args.profile:
        profile(args)
        return
    import torch

    from s2s.model.int8 import int8_available
    from s2s.precision import bf16_measured_faster, bf16_runs

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16_ok = bf16_runs(device)  # without bf16 kernels (e.g. an AVX2-only CPU) the bf16 parts are left out, as null
    out: dict = {
        "threads": args.threads,
        "device": device.type,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16": bf16_ok,
    }
    out["matmul_peak_gflops"] = round(matmul_peak_gflops("float32"), 1)
    out["matmul_peak_gflops_bf16"] = round(matmul_peak_gflops("bfloat16"), 1) if bf16_ok else None

    # int8 where bf16 is not the faster option (no bf16 kernels, or bf16 multiplies measured slow)
    bf16_fast = bf16_measured_faster(device)
    int8_ok = device.type == "cpu" and int8_available() and (args.all_precisions or not bf16_fast)
    out["int8"] = int8_ok
    bf16_wanted = bf16_ok and (args.all_precisions or bf16_fast)  # where bf16 is slow, int8 is the fast decoding

    def part(*extra: str, bf16: bool = False, int8: bool = False) -> dict | None:
        wanted = (bf16_wanted or not bf16) and (int8_ok or not int8)
        return run_part(args, *extra) if wanted else None

    ref32 = part("--part=train-fp32", "--model", "reference")
    ref16 = (
        run_part(args, "--part=train-bf16", "--model", "reference") if bf16_ok else None
    )  # the table asks for it
    out.update(
        ref_train_tok_per_s=round(ref32["tok_per_s"]),
        ref_train_tok_per_s_bf16=ref16 and round(ref16["tok_per_s"]),
        ref_flops_per_tok=round(ref32["flops_per_tok"]),
        ref_params=ref32["params"],
        ref_batch_target_tokens=round(ref32["batch_target_tokens"]),
        ref_max_tokens=ref32["max_tokens"],
        train_peak_rss_mb=round(max(r["peak_rss_mb"] for r in (ref32, ref16) if r)),
    )
    out["ref_train_peak_fraction"] = round(
        ref32["tok_per_s"] * ref32["flops_per_tok"] / 1e9 / out["matmul_peak_gflops"], 3
    )
    decode_rss = []
    if args.reference_run:
        fp32 = part(f"--part=decode-fp32-b1={args.reference_run}")
        bf16 = part(f"--part=decode-bf16={args.reference_run}", bf16=True)
        int8 = part(f"--part=decode-int8={args.reference_run}", int8=True)
        out.update({f"ref_{k}": round(v, 2) for k, v in fp32.items() if k != "peak_rss_mb"})
        for name, result in (("bf16", bf16), ("int8", int8)):
            out.update(
                {
                    f"ref_{k}_{name}": result and round(result[k], 2)
                    for k in fp32
                    if k not in ("peak_rss_mb", "mean_ref_len") and not k.endswith("_b1")
                }
            )
        decode_rss += [r["peak_rss_mb"] for r in (fp32, bf16, int8) if r]
    if args.run:
        own = part("--part=train-fp32", "--model", "recipe")
        own16 = part("--part=train-bf16", "--model", "recipe", bf16=True)
        out.update(
            train_tok_per_s=round(own["tok_per_s"]),
            train_tok_per_s_bf16=own16 and round(own16["tok_per_s"]),
            params=own["params"],
            flops_per_tok=round(own["flops_per_tok"]),
            train_peak_fraction=round(own["tok_per_s"] * own["flops_per_tok"] / 1e9 / out["matmul_peak_gflops"], 3),
        )
        fp32 = part(f"--part=decode-fp32={args.run}")
        bf16 = part(f"--part=decode-bf16={args.run}", bf16=True)
        int8 = part(f"--part=decode-int8={args.run}", int8=True)
        out.update({k: round(v, 2) for k, v in fp32.items() if k not in ("peak_rss_mb", "mean_ref_len")})
        for name, result in (("bf16", bf16), ("int8", int8)):
            out.update(
                {
                    f"{k}_{name}": result and round(result[k], 2)
                    for k in fp32
                    if k not in ("peak_rss_mb", "mean_ref_len")
                }
            )
        decode_rss += [r["peak_rss_mb"] for r in (fp32, bf16, int8) if r]
    if decode_rss:
        out["decode_peak_rss_mb"] = round(max(decode_rss))
    out["seconds"] = round(time.perf_counter() - started, 1)
    width = max(len(k) for k in out)
    for key, value in out.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(out))


if __name__ == "__main__":
    with user_errors_exit():  # a bad run, or bf16 where it does not run: one error line, exit status 2
        main()
