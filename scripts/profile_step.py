"""Where does a training step (or a decoding batch) spend its time? torch.profiler on the reference shape.

    python scripts/profile_step.py [--batch 64] [--src-len 15] [--tgt-len 14] [--steps 10] [--decode]

Synthetic equal-length batches of random ids (vocabulary 8000), so the numbers isolate the
model and the loop from data loading. Prints the operators with the most self CPU time and
the step rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from omegaconf import OmegaConf  # noqa: E402

from s2s.arguments import CONF_DIR  # noqa: E402
from s2s.config import ModelConfig, SearchConfig  # noqa: E402
from s2s.data.batching import make_batch  # noqa: E402
from s2s.decoding.search import decode  # noqa: E402
from s2s.model.seq2seq import Seq2Seq  # noqa: E402
from s2s.precision import bf16_runs  # noqa: E402
from s2s.training.trainer import token_loss  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--src-len", type=int, default=15)
    parser.add_argument("--tgt-len", type=int, default=14)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--decode", action="store_true", help="profile greedy decoding instead of training")
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--shapes", action="store_true", help="one row per operator and input shapes")
    args = parser.parse_args()
    if args.bf16 and not bf16_runs(torch.device("cpu")):
        raise SystemExit(
            f"error: --bf16 needs a CPU with bf16 kernels (AVX512 or better); this one is {torch.backends.cpu.get_cpu_capability()}"
        )
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = OmegaConf.load(os.path.join(CONF_DIR, "model", "base.yaml"))  # the reference shape: model=base
    model = Seq2Seq(
        OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), base)), args.vocab, args.vocab
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the trainer makes it
    ids = lambda n: torch.randint(4, args.vocab, (args.batch, n)).tolist()  # noqa: E731
    batch = make_batch(ids(args.src_len - 1), ids(args.tgt_len - 1), list(range(args.batch)))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)

    def train_step() -> None:
        model.train()
        with autocast:
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss = token_loss(logits, batch.tgt_out, 0.1) / batch.num_tgt_tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    def decode_step() -> None:
        model.eval()
        decode(model, batch, SearchConfig(beam_size=1, max_len_a=0, max_len_b=args.tgt_len))

    step = decode_step if args.decode else train_step
    for _ in range(3):
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - started) / args.steps
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        for _ in range(args.steps):
            step()
    print(prof.key_averages(group_by_input_shape=args.shapes).table(sort_by="self_cpu_time_total", row_limit=args.rows))
    tokens = args.batch * args.tgt_len
    print(
        f"{seconds * 1000:.1f} ms per {'decoding batch' if args.decode else 'step'}; {tokens / seconds:.0f} target tokens/s"
    )


if __name__ == "__main__":
    main()
