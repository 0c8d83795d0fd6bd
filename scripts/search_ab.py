"""Is a change to s2s/search.py faster? The working tree's search against a git revision's, in one process.

    python scripts/search_ab.py --run RUN [--rev HEAD] [--precision int8] [--beam 5] [--sentences 512] [--rounds 6]

Both versions decode the same test2016 sentences (length-sorted batches of 64, at most 100
output tokens) with the same model, alternating old-new, new-old round by round, so that the
shared machine's drift falls on both alike; prints sentences/s per round, the medians, and
whether the two gave identical outputs. Only s2s/search.py is taken from the revision: the
model code is the working tree's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--rev", default="HEAD", help="the git revision whose s2s/search.py is the old version")
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    parser.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    parser.add_argument("--sentences", type=int, default=512, help="test2016 sentences per pass")
    parser.add_argument("--rounds", type=int, default=6, help="passes of each version")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data", "multi30k"))
    return parser.parse_args()


def load_old_search(rev: str, folder: str):
    """s2s/search.py as it was at `rev`, imported as a module of its own."""
    source = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:s2s/search.py"], capture_output=True, text=True)
    if source.returncode != 0:
        raise SystemExit(f"error: cannot read s2s/search.py at {rev}: {source.stderr.strip()}")
    path = os.path.join(folder, "old_search.py")
    with open(path, "w") as handle:
        handle.write(source.stdout)
    spec = importlib.util.spec_from_file_location("old_search", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_search"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    args = parse_args()
    import torch

    from s2s.data.batching import make_batch
    from s2s.data.corpus import load_split
    from s2s.decoding import search as new_search
    from s2s.decoding.translator import load_translator
    from s2s.model.int8 import int8_copy
    from s2s.special_tokens import EOS

    torch.set_num_threads(args.threads)
    overrides = ["max_len_a=0", "max_len_b=100", f"beam_size={args.beam}", "length_penalty=1.0"]
    translator, cfg, _ = load_translator(args.run, "best", "cpu", overrides)
    cfg.data.dir = args.data_dir
    model = translator.model.eval()
    if args.precision == "int8":
        model = int8_copy(model)
    sources = list(load_split(cfg.data, cfg.data.test_split)["src"])[: args.sentences]
    ids = sorted((ids + [EOS] for ids in translator.tokenizers.encode_src(sources)), key=len)
    batches = [make_batch(ids[i : i + 64], None, range(len(ids[i : i + 64]))) for i in range(0, len(ids), 64)]
    with tempfile.TemporaryDirectory() as folder:
        versions = {"old": load_old_search(args.rev, folder), "new": new_search}
        speeds: dict[str, list[float]] = {"old": [], "new": []}
        outputs: dict[str, list] = {}
        versions["new"].decode(model, batches[0], translator.search)  # warm-up
        for round_ in range(args.rounds):
            for name in ("old", "new") if round_ % 2 == 0 else ("new", "old"):
                started = time.perf_counter()
                results = [versions[name].decode(model, batch, translator.search) for batch in batches]
                speeds[name].append(len(ids) / (time.perf_counter() - started))
                outputs[name] = [[h.tokens for h in n_best] for result in results for n_best in result]
    label = f"{args.precision}, {'greedy' if args.beam == 1 else f'beam {args.beam}'}, {len(ids)} sentences"
    for name in ("old", "new"):
        rounds = " / ".join(f"{s:.1f}" for s in speeds[name])
        print(
            f"{label}: {name} ({args.rev if name == 'old' else 'working tree'}) {rounds} sent/s, median {statistics.median(speeds[name]):.1f}"
        )
    print(f"identical outputs: {outputs['old'] == outputs['new']}")


if __name__ == "__main__":
    main()
