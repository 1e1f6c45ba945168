"""The normalised (adam) attention path: its hand-written autograd function against float64 step-by-step loops."""

import pytest
import torch
import torch.nn.functional as F

from momsearch.blocks import Attention, _attention_adam
from momsearch.blocks._attention_adam import adam_attention
from momsearch.rules import Adam
from tests.test_attention import reference

RULES = {"adam": Adam(mu=0.9, s=0.7, beta=0.8, eps=1e-8), "adam_mu0": Adam(mu=0.0, s=1.3, beta=0.99, eps=1e-3)}


def _inputs(batch, heads, steps, dh, requires_grad=False):
    return [torch.randn(batch, heads, steps, dh, dtype=torch.float64, requires_grad=requires_grad)
            for _ in range(3)]


def _right_padding(batch, steps):
    padding = torch.zeros(batch, steps, dtype=torch.bool)
    padding[1, steps - 7:] = True  # ends inside an earlier chunk than the others
    padding[2, 3:] = True  # ends in the first chunk
    return padding


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("mask", ["none", "right", "anywhere"])
@pytest.mark.parametrize("chunk", [None, 5])
def test_matches_the_recurrence_over_many_chunks(rule, causal, mask, chunk, monkeypatch):
    """T = 37 is no multiple of the chunk (16, or 5: eight chunks); padding ends inside different chunks."""
    if chunk is not None:
        monkeypatch.setattr(_attention_adam, "CHUNK", chunk)
    steps = 37
    q, k, v = _inputs(3, 2, steps, 3)
    padding = None
    if mask == "right":
        padding = _right_padding(3, steps)
    elif mask == "anywhere":
        padding = torch.rand(3, steps) < 0.3
    att = Attention(6, 2, "linear", RULES[rule], causal=causal).double()
    want = reference(q, k, v, RULES[rule], causal, padding)
    assert (att.attend(q, k, v, padding) - want).abs().max() < 1e-12


@pytest.mark.parametrize("causal", [True, False])
def test_gradcheck_across_chunks(causal, monkeypatch):
    """The autograd function's backward (chunks of 4 over 10 steps, two lengths) against finite differences."""
    monkeypatch.setattr(_attention_adam, "CHUNK", 4)
    fq, fk = (F.elu(x).add(1).detach().requires_grad_() for x in _inputs(3, 1, 10, 2)[:2])
    v = torch.randn(3, 1, 10, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([10, 7, 3])
    fk_masked = lambda k: k * (torch.arange(10)[None, :] < lengths[:, None])[:, None, :, None]  # noqa: E731
    rule = RULES["adam"]
    assert torch.autograd.gradcheck(
        lambda a, b, c: adam_attention(a, fk_masked(b), c, rule, causal, 64, lengths), (fq, fk, v))


@pytest.mark.parametrize("causal", [True, False])
def test_gradients_match_autograd_through_the_loop(causal, monkeypatch):
    """Gradients of the whole block against autograd through the float64 step-by-step reference."""
    monkeypatch.setattr(_attention_adam, "CHUNK", 4)
    rule = RULES["adam"]
    q, k, v = _inputs(3, 2, 13, 3, requires_grad=True)
    padding = _right_padding(3, 13)
    weights = torch.randn(3, 2, 13, 3, dtype=torch.float64)
    att = Attention(6, 2, "linear", rule, causal=causal).double()
    got = torch.autograd.grad((att.attend(q, k, v, padding) * weights).sum(), (q, k, v))
    want = torch.autograd.grad((reference(q, k, v, rule, causal, padding) * weights).sum(), (q, k, v))
    for g, w in zip(got, want, strict=True):
        assert (g - w).abs().max() < 1e-12


@pytest.mark.parametrize("causal", [True, False])
def test_no_grad_forward_is_the_training_forward(causal):
    rule = RULES["adam"]
    q, k, v = _inputs(2, 2, 40, 4, requires_grad=True)
    att = Attention(8, 2, "linear", rule, causal=causal).double()
    trained = att.attend(q, k, v)
    with torch.no_grad():
        assert torch.equal(att.attend(q, k, v), trained)


def test_float32_backward_runs_and_keeps_no_per_step_states():
    """Training in float32 over 64 steps: what the function saves is its inputs and 3 states per chunk."""
    rule = RULES["adam"]
    att = Attention(8, 2, "linear", rule)
    q, k, v = (torch.randn(2, 2, 64, 4, requires_grad=True) for _ in range(3))
    y = att.attend(q, k, v)
    node = y.grad_fn
    seen, stack = set(), [node]
    saved_numel = 0
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if type(fn).__name__ == "_AdamChunksBackward":
            saved_numel = sum(t.numel() for t in fn.saved_tensors)
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    chunks = -(-64 // _attention_adam.CHUNK)
    per_step_inputs = 64 * 2 * 2 * 4 * 3  # s·φ(q), φ(k), v
    assert saved_numel == per_step_inputs + chunks * 3 * (2 * 2 * 4 * 4) + 2 * 2  # + the last-step index
    y.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


@pytest.mark.parametrize("causal", [True, False])
def test_the_export_path_is_the_same_recurrence(causal, monkeypatch):
    """What ``torch.export`` traces (no in-place ops) against the float64 loop, then through ``torch.export``."""
    monkeypatch.setattr(_attention_adam, "CHUNK", 5)
    rule = RULES["adam"]
    q, k, v = _inputs(3, 2, 23, 3)
    padding = _right_padding(3, 23)
    want = reference(q, k, v, rule, causal, padding)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    att = Attention(6, 2, "linear", rule, causal=causal).double()
    assert (att.attend(q, k, v, padding) - want).abs().max() < 1e-12
    monkeypatch.undo()
    x = torch.randn(2, 20, 6, dtype=torch.float64)
    program = torch.export.export(att, (x,))
    with torch.no_grad():
        assert (program.module()(x) - att(x)).abs().max() < 1e-12
