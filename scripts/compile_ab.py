"""Does torch.compile make s2s faster? Eager against compiled, alternating, each run in its own process.

    python scripts/compile_ab.py decode --run RUN [--beam 1] [--sentences 1000] [--rounds 2]
    python scripts/compile_ab.py train [--rounds 2]

decode: the translator's per-step function (`Seq2Seq.step`: target embedding, LSTM cell,
attention, W_c, output layer, log-softmax) compiled with dynamic shapes (rows shrink as
sentences finish; source lengths vary by batch); test2016 in batches of 64, at most 100
output tokens; the median of 3 passes per process, after a warm-up pass that also compiles.

train: the decoder's elementwise work at every step compiled with dynamic shapes, forward
and backward (the LSTM gate nonlinearities, `s2s.model.cells.lstm_pointwise`, and the
additive attention's tanh and scores, `s2s.model.attention.additive_scores`); the matrix
multiplies stay torch's. Measured as scripts/benchmark.py measures the reference shape's
fp32 training (real Multi30k batches of about 900 target tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["decode", "train"])
    parser.add_argument("--run", help="decode: a trained run directory")
    parser.add_argument("--beam", type=int, default=1, help="decode: beam size (1 = greedy)")
    parser.add_argument("--sentences", type=int, default=1000, help="decode: test2016 sentences per pass")
    parser.add_argument("--rounds", type=int, default=2, help="eager/compiled pairs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data", "multi30k"))
    parser.add_argument("--child", choices=["eager", "compiled"], help=argparse.SUPPRESS)
    return parser.parse_args()


def decode_speed(args: argparse.Namespace, compiled: bool) -> float:
    """Median sentences/s of 3 passes. Not scripts/benchmark.py's part_decode: its warm-up (128
    sentences) would leave recompilations for unseen shapes in the timed passes."""
    import torch

    from s2s.data.corpus import load_split
    from s2s.decoding.translator import load_translator

    overrides = ["batch_size=64", "max_len_a=0", "max_len_b=100", f"beam_size={args.beam}"]
    translator, cfg, _ = load_translator(args.run, "best", "cpu", overrides)
    cfg.data.dir = args.data_dir
    sources = list(load_split(cfg.data, cfg.data.test_split)["src"])[: args.sentences]
    if compiled:
        translator.model.step = torch.compile(translator.model.step, dynamic=True)
    translator.translate_detailed(sources, max_input_tokens=None)  # warm-up (and compilation)
    speeds = []
    for _ in range(3):
        started = time.perf_counter()
        translator.translate_detailed(sources, max_input_tokens=None)
        speeds.append(len(sources) / (time.perf_counter() - started))
    return statistics.median(speeds)


def train_speed(args: argparse.Namespace, compiled: bool) -> float:
    import torch

    import s2s.model.attention as attention
    import s2s.model.cells as cells

    if compiled:
        cells.lstm_pointwise = torch.compile(cells.lstm_pointwise, dynamic=True)
        attention.additive_scores = torch.compile(attention.additive_scores, dynamic=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import benchmark

    options = benchmark.parse_args(
        ["--data-dir", args.data_dir, "--threads", str(args.threads), "--warmup", "10", "--model", "reference"]
    )
    return benchmark.part_train(options, "fp32")["tok_per_s"]


def main() -> None:
    args = parse_args()
    if args.what == "decode" and not args.run:
        raise SystemExit("error: decode needs --run RUN (a trained run directory)")
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        measure = decode_speed if args.what == "decode" else train_speed
        print(json.dumps({"speed": measure(args, args.child == "compiled")}))
        return
    unit = "sentences/s" if args.what == "decode" else "target tokens/s"
    results: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for mode in results:
            command = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--child", mode]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(
                    f"error: the {mode} run failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"
                )
            results[mode].append(json.loads(done.stdout.strip().splitlines()[-1])["speed"])
            print(f"{mode:<9} {results[mode][-1]:8.1f} {unit}", flush=True)
    summary = {mode: round(statistics.median(speeds), 1) for mode, speeds in results.items()}
    summary["compiled_over_eager"] = round(summary["compiled"] / summary["eager"], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
