"""Forward+backward time of every rule of ``momsearch.blocks.RNN(cell="lstm")`` against ``torch.nn.LSTM``.

Also times the obvious per-step Python-loop heavy-ball LSTM cell, the implementation the fast paths replace.
Everything runs in one process on one thread, with denormals flushed; runs are interleaved round-robin
and the median is reported. Times are the CPU time of this process (``time.process_time``), which other
jobs on shared cores disturb far less than wall-clock time.

    python benchmarks/bench_rnn.py            # (B=64, T=784, I=1, H=128) and (B=32, T=256, I=32, H=256)
    python benchmarks/bench_rnn.py --quick    # smaller sizes, a few seconds
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from momsearch.blocks import RNN
from momsearch.rules import Adam, HeavyBall, NesterovRestart, Plain, RMSProp

RULES = {
    "plain": Plain(),
    "heavy_ball": HeavyBall(mu=0.6, s=0.6),
    "nesterov_restart": NesterovRestart(s=0.6, restart_every=10),
    "adam": Adam(mu=0.6, s=0.6, beta=0.999),
    "rmsprop": RMSProp(s=0.6, beta=0.999),
}
TARGETS = {"plain": 1.10, "heavy_ball": 1.10, "nesterov_restart": 2.0, "adam": 1.5, "rmsprop": 1.5}
FULL = [(64, 784, 1, 128), (32, 256, 32, 256)]
QUICK = [(16, 128, 1, 32), (8, 64, 8, 64)]


class NaiveMomentumLSTM(nn.Module):
    """The obvious heavy-ball LSTM: one Python step per time step, input GEMM and momentum inside the loop."""

    def __init__(self, input_size: int, hidden_size: int, mu: float, s: float):
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.mu, self.s = mu, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        H = self.cell.hidden_size
        h = x.new_zeros(B, H)  # (B, H)
        c = x.new_zeros(B, H)  # (B, H)
        v = x.new_zeros(B, 4 * H)  # (B, 4H)
        outs = []
        for t in range(T):
            g = x[:, t] @ self.cell.weight_ih.t() + self.cell.bias_ih  # (B, 4H)
            v = self.mu * v + self.s * g  # (B, 4H)
            z = v + h @ self.cell.weight_hh.t() + self.cell.bias_hh  # (B, 4H)
            i, f, gg, o = z.chunk(4, dim=1)  # (B, H) each
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)  # (B, H)
            h = torch.sigmoid(o) * torch.tanh(c)  # (B, H)
            outs.append(h)
        return torch.stack(outs, dim=1)  # (B, T, H)


def fwd_bwd(module: nn.Module, x: torch.Tensor):
    """One timed unit: forward, sum of the outputs, backward."""

    def run() -> None:
        module.zero_grad(set_to_none=True)
        out = module(x)
        out = out[0] if isinstance(out, tuple) else out  # (B, T, H)
        out.sum().backward()

    return run


def measure(size: tuple[int, int, int, int], repeats: int) -> dict[str, float]:
    """Median seconds of each contender at ``size`` = (B, T, I, H), interleaving the runs."""
    B, T, I, H = size
    x = torch.randn(B, T, I)  # (B, T, I)
    contenders = {"nn.LSTM": fwd_bwd(nn.LSTM(I, H, batch_first=True), x)}
    for name, rule in RULES.items():
        contenders[name] = fwd_bwd(RNN(I, H, cell="lstm", rule=rule, batch_first=True), x)
    contenders["naive loop"] = fwd_bwd(NaiveMomentumLSTM(I, H, mu=0.6, s=0.6), x)
    for run in contenders.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.process_time()
            run()
            times[name].append(time.process_time() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def report(size: tuple[int, int, int, int], medians: dict[str, float]) -> None:
    """Print one table: milliseconds, ratio to nn.LSTM, target, speed-up over the naive loop."""
    base, naive = medians["nn.LSTM"], medians["naive loop"]
    B, T, I, H = size
    print(f"\nB={B} T={T} I={I} H={H}  (forward+backward, median process time, 1 thread)")
    print(f"{'path':<18}{'ms':>10}{'x nn.LSTM':>11}{'target':>8}{'naive/this':>12}")
    for name, sec in medians.items():
        target = f"<={TARGETS[name]:.2f}" if name in TARGETS else ""
        print(f"{name:<18}{1000 * sec:>10.1f}{sec / base:>11.2f}{target:>8}{naive / sec:>12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per contender (>= 5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    for size in QUICK if args.quick else FULL:
        report(size, measure(size, max(args.repeats, 5)))


if __name__ == "__main__":
    main()
