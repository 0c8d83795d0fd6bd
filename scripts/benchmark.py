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
import subprocess
import sys
import time

from s2s.errors import user_errors_exit
from scripts.benchmark_parts import matmul_peak_gflops, part_decode, part_train, profile

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
