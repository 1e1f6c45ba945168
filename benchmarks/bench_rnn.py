"""Forward+backward time of every rule of ``momsearch.blocks.RNN`` against its torch twin (nn.LSTM/GRU/RNN).

Every rule of the catalog, with the path the block chose for it (``RNN.path``), the number of autograd
nodes one forward records, and the compute kernels one forward+backward dispatches (leaf aten ops in
``torch.profiler``'s trace, views left out), in all and per step: the fused torch kernels are O(1) in both;
the hand-differentiated layers are O(1) in nodes but O(T) in kernels (a Python step loop inside one node),
which on a GPU means O(T) launches. nn.GRU and nn.RNN on the CPU are themselves per-step aten loops. For LSTM
it also times the obvious per-step Python-loop heavy-ball cell, the implementation the fast paths replace.
Everything runs in one process on one thread, with denormals flushed; runs are interleaved round-robin and
the median is reported. Times are the CPU time
of this process (``time.process_time``), which other jobs on shared cores disturb far less than wall-clock.

    python benchmarks/bench_rnn.py                # LSTM, GRU and tanh at the large and the small (searched) sizes
    python benchmarks/bench_rnn.py --cells lstm   # the LSTM only
    python benchmarks/bench_rnn.py --quick        # smaller sizes, a few seconds
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from momsearch.blocks import RNN
from momsearch.catalog.rnn import RULES as RULE_PARAMS
from momsearch.rules import make

HYPER = {"mu": 0.6, "s": 0.6, "beta": 0.999, "restart_every": 10}  # every rule of the catalog, these values
RULES = {name: make(name, **{k: v for k, v in HYPER.items() if k in params}) for name, params in RULE_PARAMS.items()}
TARGETS = {"plain": 1.10, "heavy_ball": 1.10, "nesterov_momentum": 1.10, "nesterov_restart": 1.4, "adam": 1.3,
           "rmsprop": 1.3}  # issue 21
TWINS = {"lstm": nn.LSTM, "gru": nn.GRU, "tanh": nn.RNN}
FULL = [(64, 784, 1, 128), (32, 256, 32, 256), (32, 256, 8, 64), (32, 256, 8, 32)]  # the last two: searched sizes
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


def autograd_nodes(module: nn.Module, x: torch.Tensor) -> int:
    """Autograd nodes one forward records (every node reachable from the output's ``grad_fn``)."""
    out = module(x)
    out = out[0] if isinstance(out, tuple) else out
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


# ops that only describe memory (views, allocation): no kernel runs for them on any device
METADATA_OPS = {"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::as_strided", "aten::view",
                "aten::select", "aten::slice", "aten::unbind", "aten::split", "aten::split_with_sizes",
                "aten::narrow", "aten::transpose", "aten::t", "aten::expand", "aten::reshape", "aten::detach",
                "aten::alias", "aten::_unsafe_view", "aten::unsqueeze", "aten::squeeze", "aten::permute",
                "aten::resize_", "aten::lift_fresh", "aten::chunk", "aten::unsafe_chunk", "aten::unsafe_split",
                "aten::_reshape_alias", "aten::view_as", "aten::expand_as", "aten::result_type",
                "aten::resolve_conj", "aten::resolve_neg", "aten::to"}
# matrix products: one kernel each, though the trace shows them with children (conjugation checks, the copy of
# addmm's input into ``out``, itself counted as the copy kernel it is)
PRODUCT_OPS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::baddbmm_",
               "aten::addbmm", "aten::mv", "aten::addmv", "aten::dot"}


def dispatched_kernels(run) -> int:
    """Compute ops one forward+backward dispatches: the matrix products and the leaf ``aten::`` ops in
    ``torch.profiler``'s trace, views, allocations and no-op checks left out. On a GPU each is at least one
    kernel launch, so a per-step loop shows as O(T)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run()
    return sum(1 for e in prof.events() if e.name in PRODUCT_OPS or (
        e.name.startswith("aten::") and not e.cpu_children and e.name not in METADATA_OPS))


def measure(cell: str, size: tuple[int, int, int, int], repeats: int) -> tuple[dict[str, float], dict[str, str],
                                                                              dict[str, tuple[int, int]]]:
    """Median seconds, path, and autograd nodes per forward and kernels per forward+backward of each contender
    for ``cell`` at ``size`` = (B, T, I, H)."""
    B, T, I, H = size
    x = torch.randn(B, T, I)  # (B, T, I)
    twin = f"nn.{TWINS[cell].__name__}"
    modules = {twin: TWINS[cell](I, H, batch_first=True)}
    paths = {twin: "torch"}
    for name, rule in RULES.items():
        modules[name] = RNN(I, H, cell=cell, rule=rule, batch_first=True)
        paths[name] = modules[name].path
    if cell == "lstm":
        modules["naive loop"] = NaiveMomentumLSTM(I, H, mu=0.6, s=0.6)
        paths["naive loop"] = "python loop"
    contenders = {name: fwd_bwd(module, x) for name, module in modules.items()}
    for run in contenders.values():  # warm-up
        run()
    nodes = {name: (autograd_nodes(module, x), dispatched_kernels(contenders[name]))
             for name, module in modules.items()}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.process_time()
            run()
            times[name].append(time.process_time() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}, paths, nodes


def report(cell: str, size: tuple[int, int, int, int], medians: dict[str, float], paths: dict[str, str],
           nodes: dict[str, tuple[int, int]]) -> None:
    """Print one table: milliseconds, ratio to the torch twin, target, path, autograd nodes per forward, compute
    kernels per forward+backward and per step."""
    twin = next(iter(medians))
    base = medians[twin]
    B, T, I, H = size
    print(f"\n{cell}: B={B} T={T} I={I} H={H}  (forward+backward, median process time, 1 thread)")
    print(f"{'path':<19}{'ms':>9}{f'x {twin}':>11}{'target':>8}  {'block path':<14}{'nodes':>7}{'kernels':>9}"
          f"{'/step':>7}")
    for name, sec in medians.items():
        target = f"<={TARGETS[name]:.2f}" if name in TARGETS else ""
        n_nodes, kernels = nodes[name]
        print(f"{name:<19}{1000 * sec:>9.1f}{sec / base:>11.2f}{target:>8}  {paths[name]:<14}{n_nodes:>7}"
              f"{kernels:>9}{kernels / T:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per contender (>= 5)")
    parser.add_argument("--cells", nargs="+", default=list(TWINS), choices=list(TWINS), help="cells to time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    for cell in args.cells:
        for size in QUICK if args.quick else FULL:
            report(cell, size, *measure(cell, size, max(args.repeats, 5)))


if __name__ == "__main__":
    main()
