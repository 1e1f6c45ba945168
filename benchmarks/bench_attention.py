"""Benchmark: exact momentum linear attention against plain linear attention and softmax SDPA.

    python benchmarks/bench_attention.py            # B=8, heads=4, head dim 32, T in {1024, 4096}
    python benchmarks/bench_attention.py --quick    # T in {256, 1024}, fewer repetitions

Times ``Attention.attend`` (the attention on per-head q, k, v: feature map, chunked parallel form,
normaliser; no projections), causal, one intra-op thread: forward under ``torch.no_grad`` and
forward+backward, medians, with ratios against plain linear attention measured in the same process.
On the CPU the clock is the process's CPU time (``time.process_time``; one thread, so it is the call's
compute time and does not count the time another process holds the core); on CUDA it is wall time
after a synchronisation.
Memory is measured in a fresh subprocess per configuration: the peak resident-set growth (``VmHWM``, reset
just before the call, minus the resident set then; after a small warm-up) during one forward+backward, i.e.
everything the call allocates beyond its inputs (autograd buffers, gradients); on CUDA the peak of
``torch.cuda.max_memory_allocated`` above the allocation before the call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from momsearch.blocks import Attention
from momsearch.rules import Adam, HeavyBall, NesterovRestart, Plain

BATCH, HEADS, HEAD_DIM, CHUNK = 8, 4, 32, 64
CONFIGS = {
    "plain linear": ("linear", Plain()),
    "heavy_ball": ("linear", HeavyBall(mu=0.6, s=0.6)),
    "nesterov_restart": ("linear", NesterovRestart(s=0.6, restart_every=10)),
    "adam": ("linear", Adam(mu=0.6, s=0.6, beta=0.999, eps=1e-16)),
    "softmax SDPA": ("softmax", Plain()),
}


def make(name: str, steps: int, device: str):
    """The module and (B, H, T, dh) inputs for configuration ``name``."""
    kind, rule = CONFIGS[name]
    att = Attention(HEADS * HEAD_DIM, HEADS, kind, rule, causal=True, chunk_size=CHUNK).to(device)
    inputs = [torch.randn(BATCH, HEADS, steps, HEAD_DIM, device=device, requires_grad=True) for _ in range(3)]
    return att, inputs


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def forward(att: Attention, inputs) -> None:
    with torch.no_grad():
        att.attend(*inputs)


def forward_backward(att: Attention, inputs) -> None:
    att.attend(*inputs).sum().backward()
    for x in inputs:
        x.grad = None


def interleaved_medians(fn, setups: dict, repeats: dict, device: str) -> dict[str, float]:
    """Median time (ms) of ``fn(att, inputs)`` per configuration, after one warm-up call each.

    Repetitions are interleaved across configurations, so a load change on the machine hits them alike.
    """
    clock = time.perf_counter if device.startswith("cuda") else time.process_time
    times: dict[str, list[float]] = {name: [] for name in setups}
    for att, inputs in setups.values():
        fn(att, inputs)
    for rep in range(max(repeats.values())):
        for name, (att, inputs) in setups.items():
            if rep >= repeats[name]:
                continue
            _sync(device)
            start = clock()
            fn(att, inputs)
            _sync(device)
            times[name].append(clock() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``, ``VmHWM``) in MB."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 2**10


def peak_memory_mb(name: str, steps: int, device: str) -> float:
    """Peak memory growth (MB) of one forward+backward; meant to run in a fresh process."""
    att, small = make(name, 2 * CHUNK, device)
    forward_backward(att, small)  # warm-up: lazy initialisation is not counted
    att, inputs = make(name, steps, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        forward_backward(att, inputs)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident set
    before = _status_mb("VmRSS")
    forward_backward(att, inputs)
    return _status_mb("VmHWM") - before


def memory_in_subprocess(name: str, steps: int, device: str) -> float:
    """Run :func:`peak_memory_mb` in a fresh interpreter, so one configuration's peak does not hide another's."""
    # a fixed mmap threshold makes glibc return every large freed block at once, so the resident-set
    # peak follows the live tensors instead of the allocator's heap growth
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    command = [sys.executable, __file__, "--memory-of", name, "--steps", str(steps), "--device", device]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T in {256, 1024} and fewer repetitions")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-of", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.memory_of:
        print(json.dumps({"peak_mb": peak_memory_mb(args.memory_of, args.steps, args.device)}))
        return
    lengths = (256, 1024) if args.quick else (1024, 4096)
    repeats = 3 if args.quick else 7
    clock = "wall time" if args.device.startswith("cuda") else "process CPU time"
    print(f"B={BATCH}, heads={HEADS}, head dim={HEAD_DIM}, chunk={CHUNK}, causal, device={args.device}, "
          f"1 thread; medians of {repeats} ({clock}); forward under no_grad")
    memory: dict[tuple[str, int], float] = {}
    reps = dict.fromkeys(CONFIGS, repeats)
    for steps in lengths:
        setups = {name: make(name, steps, args.device) for name in CONFIGS}
        fwd = interleaved_medians(forward, setups, reps, args.device)
        both = interleaved_medians(forward_backward, setups, reps, args.device)
        del setups
        base = "plain linear"
        print(f"\nT={steps}")
        print(f"{'attention':<18}{'fwd ms':>9}{'ratio':>7}{'fwd+bwd ms':>12}{'ratio':>7}{'peak MB':>10}")
        for name in CONFIGS:
            memory[name, steps] = memory_in_subprocess(name, steps, args.device)
            print(f"{name:<18}{fwd[name]:9.1f}{fwd[name] / fwd[base]:7.2f}{both[name]:12.1f}"
                  f"{both[name] / both[base]:7.2f}{memory[name, steps]:10.1f}")
    short, long = lengths
    print(f"\npeak memory T={long} / T={short} (fwd+bwd):")
    for name in CONFIGS:
        print(f"  {name:<18}{memory[name, long] / memory[name, short]:6.2f}x")


if __name__ == "__main__":
    main()
