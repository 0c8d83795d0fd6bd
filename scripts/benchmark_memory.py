"""Peak memory and time of training-data preparation as the corpus grows.

For each size N, a synthetic parallel corpus of N lines (random words, 5-30 per line) is
written to a temporary directory as train.src / train.tgt (+ a small valid split). A fresh
Python process then runs what training runs before its first step,
`s2s.data.pipeline.prepare_training_data` (plain-text files, sentencepiece vocabulary 8000 learnt
from at most 200,000 sentences), and goes through one epoch of batches, making every
Batch. It reports its peak resident set size (getrusage ru_maxrss) and wall time. Its
datasets cache starts empty, so the time includes turning the text files into Arrow.

Peak RSS counts pages of memory-mapped Arrow files that the process touched; those are
page cache the kernel can take back. The table therefore also shows the peak of anonymous
memory (the process's own heap), sampled from /proc/self/status every 50 ms.

    python -m scripts.benchmark_memory                      # 1,000,000 and 4,000,000 lines
    python -m scripts.benchmark_memory --sizes 100000 400000

The last stdout line is one JSON object: {"sizes": [...], "peak_rss_mb": [...], "seconds": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import string
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

WORDS_PER_LINE = (5, 30)
CHUNK_LINES = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.benchmark_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1_000_000, 4_000_000],
        help="corpus sizes in lines (default: 1000000 4000000)",
    )
    parser.add_argument("--vocab-size", type=int, default=8000, help="sentencepiece vocabulary size (default: 8000)")
    parser.add_argument(
        "--max-sentences",
        type=int,
        default=200_000,
        help="sentencepiece trains on at most this many sentences (default: 200000)",
    )
    parser.add_argument("--max-tokens", type=int, default=2000, help="token budget per batch (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic corpus (default: 0)")
    parser.add_argument(
        "--workdir", default=None, help="where the temporary corpora go (default: the system temp directory)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated corpora and caches")
    parser.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)  # internal: measure one corpus here
    return parser.parse_args(argv)


# ----- the synthetic corpus (parent process, not measured) ----------------------------------------


def make_vocabulary(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` random lowercase words of 2-10 letters and Zipf-like probabilities for them."""
    letters = np.array(list(string.ascii_lowercase))
    words = np.array(["".join(rng.choice(letters, size=rng.integers(2, 11))) for _ in range(count)], dtype=object)
    weights = 1.0 / np.arange(1, count + 1)
    return words, weights / weights.sum()


def write_lines(path: str, lines: int, words: np.ndarray, probabilities: np.ndarray, rng: np.random.Generator) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for first in range(0, lines, CHUNK_LINES):
            count = min(CHUNK_LINES, lines - first)
            lengths = rng.integers(WORDS_PER_LINE[0], WORDS_PER_LINE[1] + 1, size=count)
            tokens = words[rng.choice(len(words), size=int(lengths.sum()), p=probabilities)].tolist()
            ends = np.cumsum(lengths).tolist()
            starts = [0, *ends[:-1]]
            file.write("\n".join(" ".join(tokens[a:b]) for a, b in zip(starts, ends)) + "\n")


def write_corpus(directory: str, lines: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    src_words, src_p = make_vocabulary(rng, 20_000)
    tgt_words, tgt_p = make_vocabulary(rng, 20_000)
    for split, count in (("train", lines), ("valid", 500)):
        write_lines(os.path.join(directory, f"{split}.src"), count, src_words, src_p, rng)
        write_lines(os.path.join(directory, f"{split}.tgt"), count, tgt_words, tgt_p, rng)


# ----- the measurement (child process) ------------------------------------------------------------


def memory_mb() -> dict[str, float]:
    """Current RSS split into anonymous and file-backed pages, in MB (Linux)."""
    values = {}
    with open("/proc/self/status") as file:
        for line in file:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0]) / 1024
    return values


class AnonPeak:
    """Samples anonymous RSS in a thread, since the kernel keeps only the peak of the total."""

    def __init__(self, every: float = 0.05):
        self.peak, self.every = 0.0, every
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.every):
            self.peak = max(self.peak, memory_mb().get("RssAnon", 0.0))

    def stop(self) -> float:
        self.stopped.set()
        self.thread.join()
        return max(self.peak, memory_mb().get("RssAnon", 0.0))


def measure(directory: str, args: argparse.Namespace) -> dict:
    """Prepare the training data of one corpus and go through one epoch of batches."""
    import torch

    from s2s.config import CorpusFormat, DataConfig, SubwordConfig
    from s2s.data.pipeline import prepare_training_data

    torch.set_num_threads(1)
    anon = AnonPeak()
    phases = {}
    started = time.perf_counter()
    cfg = DataConfig(
        name="synthetic",
        format=CorpusFormat.text,
        dir=directory,
        src_lang="src",
        tgt_lang="tgt",
        max_tokens=args.max_tokens,
        max_len=100,
        subword=SubwordConfig(vocab_size=args.vocab_size, max_sentences=args.max_sentences),
    )
    data = prepare_training_data(cfg, os.path.join(directory, "run"), seed=0)
    phases["prepare_s"] = time.perf_counter() - started
    phases["after_prepare_mb"] = memory_mb()
    mark = time.perf_counter()
    batches = len(data.train.epoch_batches(0))  # as train.py does before its loop
    sentences = tokens = 0
    for _, batch in data.train.iterate(0):
        sentences += len(batch.indices)
        tokens += batch.num_tgt_tokens
    phases["epoch_s"] = time.perf_counter() - mark
    seconds = time.perf_counter() - started
    arrow_files = [
        os.path.join(d, f)
        for root in (
            os.environ.get("HF_DATASETS_CACHE", ""),
            os.path.dirname(data.train.pairs.cache_files[0]["filename"]),
        )
        for d, _, names in os.walk(root)
        for f in names
        if f.endswith(".arrow")
    ]
    return {
        "arrow_mb": sum(os.path.getsize(f) for f in arrow_files) / 2**20,
        "lines": data.counts["read"],
        "kept": data.counts["kept"],
        "batches": batches,
        "sentences": sentences,
        "tokens": tokens,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_anon_mb": anon.stop(),
        "seconds": seconds,
        **phases,
        "after_epoch_mb": memory_mb(),
    }


# ----- driver -------------------------------------------------------------------------------------


def run_size(lines: int, args: argparse.Namespace) -> dict:
    directory = tempfile.mkdtemp(prefix=f"s2s-bench-{lines}-", dir=args.workdir)
    try:
        began = time.perf_counter()
        write_corpus(directory, lines, args.seed)
        print(
            f"{lines:,} lines written to {directory} in {time.perf_counter() - began:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        env = dict(os.environ, HF_DATASETS_CACHE=os.path.join(directory, "hf-cache"), TMPDIR=directory)
        child = [
            sys.executable,
            "-m",
            "scripts.benchmark_memory",
            "--child",
            directory,
            "--vocab-size",
            str(args.vocab_size),
            "--max-sentences",
            str(args.max_sentences),
            "--max-tokens",
            str(args.max_tokens),
        ]
        result = subprocess.run(child, env=env, stdout=subprocess.PIPE, text=True, check=False)
        if result.returncode != 0:
            sys.exit(f"error: the measurement of {lines} lines failed (exit status {result.returncode})")
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{lines:,} lines measured: {json.dumps(measured)}", file=sys.stderr, flush=True)
        return measured
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    results = [run_size(lines, args) for lines in args.sizes]
    header = (
        "lines",
        "kept",
        "batches",
        "peak RSS MB",
        "peak anon MB",
        "file-backed MB",
        "Arrow files MB",
        "prepare s",
        "epoch s",
        "total s",
    )
    print(" ".join(f"{h:>{max(len(h), 10)}}" for h in header))
    for r in results:
        row = (
            f"{r['lines']:,}",
            f"{r['kept']:,}",
            f"{r['batches']:,}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['peak_anon_mb']:.0f}",
            f"{r['after_epoch_mb']['RssFile']:.0f}",
            f"{r['arrow_mb']:.0f}",
            f"{r['prepare_s']:.1f}",
            f"{r['epoch_s']:.1f}",
            f"{r['seconds']:.1f}",
        )
        print(" ".join(f"{v:>{max(len(h), 10)}}" for h, v in zip(header, row)))
    print(
        "file-backed MB: pages of memory-mapped files (mostly the Arrow files) resident at the end; they count in the"
        " peak RSS, but are page cache the kernel reclaims under memory pressure."
        " Peak anon MB: the process's own memory."
    )
    print(
        json.dumps(
            {
                "sizes": args.sizes,
                "peak_rss_mb": [round(r["peak_rss_mb"], 1) for r in results],
                "seconds": [round(r["seconds"], 1) for r in results],
            }
        )
    )


if __name__ == "__main__":
    main()
