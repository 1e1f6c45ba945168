"""``benchmarks/bench_rnn.py``'s kernel count: what it reports about a path must hold (O(1) or O(T) launches)."""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from momsearch.blocks import RNN
from momsearch.rules import make

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rnn.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_rnn", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kernels(bench, module, steps):
    x = torch.randn(4, steps, 3)  # (B, T, I)
    return bench.dispatched_kernels(bench.fwd_bwd(module, x))


def test_fused_kernel_is_constant_in_the_sequence_length(bench):
    torch.manual_seed(0)
    for module in (nn.LSTM(3, 8, batch_first=True), RNN(3, 8, cell="lstm", rule=make("plain"), batch_first=True)):
        assert _kernels(bench, module, 20) == _kernels(bench, module, 60)


@pytest.mark.parametrize("rule", [make("adam", mu=0.5, s=0.6, beta=0.9), make("nesterov_restart", s=0.6)])
def test_a_step_loop_inside_one_node_counts_its_kernels_per_step(bench, rule):
    """One autograd node per layer whatever the length, but every step launches kernels: 32 more steps (one more
    chunk of 32) add between 5 and 40 kernels a step."""
    torch.manual_seed(0)
    module = RNN(3, 8, cell="lstm", rule=rule, batch_first=True)
    assert bench.autograd_nodes(module, torch.randn(4, 64, 3)) == bench.autograd_nodes(module, torch.randn(4, 32, 3))
    short, long = _kernels(bench, module, 32), _kernels(bench, module, 64)
    per_step = (long - short) / 32
    assert 5 <= per_step <= 40
