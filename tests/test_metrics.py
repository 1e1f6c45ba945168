"""Measurements: device timer, NFE collection (fake ODE blocks), parameter count, peak memory, fit metrics."""

import resource
import time

import pytest
import torch
from torch import nn

from momsearch import catalog
from momsearch.metrics import (
    DeviceTimer,
    NFECounter,
    device_name,
    ode_modules,
    param_count,
    peak_memory_mb,
    reset_peak_memory,
)
from momsearch.tasks import load
from momsearch.train import fit


class FakeODE(nn.Module):
    """ODE-like block: ``nfe_forward`` = rows of the last batch, ``nfe_backward`` = twice that, set by the
    backward pass (or None: not measured), following the ODE blocks' convention."""

    def __init__(self, measured=True):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.measured = measured
        self.nfe_forward, self.nfe_backward = 0, (0 if measured else None)

    def forward(self, x):
        self.nfe_forward = len(x)
        out = self.lin(x)  # (B, 2)
        if self.measured and out.requires_grad:
            self.nfe_backward = 0
            out.register_hook(lambda grad: setattr(self, "nfe_backward", 2 * len(x)))
        return out


@pytest.fixture(scope="module")
def circles():
    return load({"name": "circles", "params": {"n_train": 100}})


def _burn(seconds):
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1
    return x


def test_cpu_timer_accumulates_process_time():
    timer = DeviceTimer("cpu")
    assert not timer.cuda and timer.seconds == 0.0
    start = time.process_time()
    with timer:
        _burn(0.05)
    with timer:
        _burn(0.05)
    total = time.process_time() - start
    assert 0 < timer.seconds <= total + 1e-6
    assert timer.wall_seconds >= 0.1
    time.sleep(0.05)  # outside the blocks: not counted
    assert timer.seconds <= total + 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_timer_is_synchronised():
    timer = DeviceTimer("cuda")
    a = torch.randn(2048, 2048, device="cuda")
    with timer:
        for _ in range(20):
            a = a @ a / a.norm()
    assert timer.cuda and timer.seconds > 0
    assert timer.seconds <= timer.wall_seconds * 1.05 + 1e-3  # the events were waited for
    assert device_name(torch.device("cuda")).startswith("cuda:0 ")


def test_nfe_counter_reference():
    model = nn.Sequential(FakeODE(), nn.Tanh(), FakeODE())
    assert len(ode_modules(model)) == 2
    counter = NFECounter(model)
    batches = [4, 4, 2]
    for rows in batches:
        model(torch.randn(rows, 2, requires_grad=True)).sum().backward()
        counter.record()
    forward = [2 * r for r in batches]  # two ODE blocks, `rows` each
    backward = [2 * 2 * r for r in batches]
    assert counter.metrics() == {
        "nfe_forward": sum(forward) / 3, "nfe_backward": sum(backward) / 3,
        "nfe_total": sum(forward) + sum(backward),
    }


def test_nfe_backward_not_measured_is_none_not_zero():
    model = nn.Sequential(FakeODE(), FakeODE(measured=False))
    counter = NFECounter(model)
    model(torch.randn(3, 2)).sum().backward()
    counter.record()
    assert counter.metrics() == {"nfe_forward": 6.0, "nfe_backward": None, "nfe_total": 6}


def test_no_ode_blocks_no_nfe():
    counter = NFECounter(nn.Linear(2, 2))
    counter.record()
    assert counter.metrics() == {}


def test_param_count():
    shared = nn.Linear(3, 2)  # 8 parameters
    frozen = nn.Linear(2, 2)
    frozen.weight.requires_grad_(False)  # 2 bias parameters stay trainable
    assert param_count(nn.Sequential(shared, frozen, shared)) == 8 + 2


def test_cpu_peak_memory_is_the_peak_rss_since_the_last_reset():
    cpu = torch.device("cpu")
    reset_peak_memory(cpu)
    before = peak_memory_mb(cpu)
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    during = peak_memory_mb(cpu)
    del big
    assert during - before > 48
    assert peak_memory_mb(cpu) <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + 1
    reset_peak_memory(cpu)  # a new run in the same process starts from the current footprint
    assert peak_memory_mb(cpu) < during - 32
    assert device_name(cpu) == "cpu"


def test_fit_metrics_without_ode(circles):
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    result = fit(model, circles, {"epochs": 2, "batch_size": 32})
    m = result.metrics
    assert set(m) <= set(catalog.METRICS) | {"device", "epochs"}
    assert not any(key.startswith("nfe") for key in m)
    assert m["device"] == "cpu" and m["epochs"] == 2 and m["params"] == 2 * 8 + 8 + 8 * 2 + 2
    assert m["device_seconds"] > 0 and m["wall_seconds"] > 0 and m["peak_memory_mb"] > 0
    assert 0 <= m["accuracy"] <= 1 and 0 <= m["test_accuracy"] <= 1 and m["loss"] > 0 and m["train_loss"] > 0


@pytest.mark.parametrize("measured", [True, False])
def test_fit_metrics_with_an_ode_block(circles, measured):
    result = fit(nn.Sequential(FakeODE(measured)), circles, {"epochs": 2, "batch_size": 32})
    m = result.metrics
    batches = [32, 32, 32, 4]  # 100 training rows
    forward = sum(batches) * 2  # two epochs
    assert m["nfe_forward"] == forward / 8
    if measured:
        assert m["nfe_backward"] == 2 * forward / 8 and m["nfe_total"] == 3 * forward
    else:
        assert m["nfe_backward"] is None and m["nfe_total"] == forward
