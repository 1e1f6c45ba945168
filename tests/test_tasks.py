"""Built-in and user tasks: shapes, dtypes, determinism, balance, semantics, learnability and errors."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from momsearch import catalog
from momsearch.errors import ConfigError, TaskError
from momsearch.tasks import BUILTIN, IGNORE, Task, load
from momsearch.train import fit

TASKS = sorted(catalog.TASKS)
SPLITS = ("train", "val", "test")


def _small(name):
    """Default params with a smaller training set where the task has one."""
    return {"n_train": 200} if "n_train" in catalog.TASKS[name]["params"] else {}


@pytest.fixture(scope="module", autouse=True)
def _warm_imports():
    from sklearn.datasets import load_digits  # noqa: F401  (keep the import out of the timings)


def test_registry_matches_catalog():
    assert set(BUILTIN) == set(catalog.TASKS)


@pytest.mark.parametrize("name", TASKS)
def test_shapes_dtypes_and_catalog_metadata(name):
    task = load({"name": name, "params": _small(name)})
    entry = catalog.TASKS[name]
    assert (task.metric, task.input, task.target) == (entry["metric"], entry["input"], entry["target"])
    assert task.params == catalog.check_params(name, entry["params"], _small(name))
    for split in SPLITS:
        x, y = getattr(task, split)[0], getattr(task, split)[-1]
        assert len(x) == len(y) > 0
        if task.input == "tokens":
            assert x.dtype == torch.int64 and x.dim() == 2
            assert 0 <= x.min() and x.max() < task.input_size
        else:
            assert x.dtype == torch.float32 and x.dim() == (3 if task.input == "sequence" else 2)
            assert x.shape[-1] == task.input_size
        if task.metric == "accuracy":
            assert y.dtype == torch.int64 and y.dim() == (2 if task.target == "every" else 1)
            scored = y[y != IGNORE]
            assert scored.numel() > 0 and 0 <= scored.min() and scored.max() < task.output_size
        else:
            assert y.dtype == torch.float32 and y.dim() == (3 if task.target == "every" else 2)
            assert y.shape[-1] == task.output_size
        if task.target == "every":
            assert y.shape[1] == x.shape[1]
        if task.has_times:
            times = getattr(task, split)[1]
            assert times.shape == x.shape[:2] and (times.diff(dim=1) >= 0).all()
    if "n_train" in task.params:
        assert [len(getattr(task, s)[0]) for s in SPLITS] == [200, 50, 50]


@pytest.mark.parametrize("name", TASKS)
def test_deterministic_from_seed(name):
    a, b = load({"name": name, "params": _small(name)}), load({"name": name, "params": _small(name)})
    other = load({"name": name, "params": {**_small(name), "seed": 1}})
    for split in SPLITS:
        for ta, tb in zip(getattr(a, split), getattr(b, split), strict=True):
            assert torch.equal(ta, tb)
    assert not torch.equal(a.train[0], other.train[0])


@pytest.mark.parametrize("name", [n for n in TASKS if catalog.TASKS[n]["metric"] == "accuracy"])
def test_class_balance(name):
    task = load({"name": name})
    for split in SPLITS:
        y = getattr(task, split)[-1]
        counts = torch.bincount(y[y != IGNORE], minlength=task.output_size).double()  # (K,)
        share = counts / counts.sum()
        # every class present; none more than twice (train) its uniform share (small splits fluctuate more)
        limit = 2.0 if split == "train" else 2.5
        assert share.min() > 0 and share.max() < limit / task.output_size, (split, counts.tolist())


@pytest.mark.parametrize("name", TASKS)
def test_generation_is_fast_at_default_size(name):
    start = time.perf_counter()
    load({"name": name})
    assert time.perf_counter() - start < 2.0  # < 1 s measured; slack for the shared machine


# --- semantics, checked against references written out in float64 --------------------------------------


def test_seq_digits_are_the_sklearn_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    task = load({"name": "seq_digits"})
    x = torch.cat([task.train[0], task.val[0], task.test[0]]).double().squeeze(-1)  # (N, 64)
    y = torch.cat([task.train[1], task.val[1], task.test[1]])  # (N,)
    assert x.shape == (1797, 64) and 0 <= x.min() and x.max() <= 1
    ref = {tuple(row): label for row, label in zip(digits.data.tolist(), digits.target.tolist(), strict=True)}
    for row, label in zip((x * 16).round().tolist(), y.tolist(), strict=True):
        assert ref[tuple(row)] == label
    permuted = load({"name": "seq_digits", "params": {"permuted": True}})
    assert torch.equal(permuted.train[1], task.train[1])  # same split, pixels reordered by one permutation
    xp = permuted.train[0].squeeze(-1)  # (B, 64)
    xs = task.train[0].squeeze(-1)  # (B, 64)
    assert not torch.equal(xp, xs)
    assert torch.equal(xp.sort(dim=1).values, xs.sort(dim=1).values)


def test_digits_file_equals_sklearn_load_digits(monkeypatch):
    from sklearn.datasets import load_digits as sklearn_digits

    from momsearch.tasks import digits

    reference = sklearn_digits()
    pixels, labels = digits.load_digits()
    assert np.array_equal(pixels, reference.data) and np.array_equal(labels, reference.target)
    code = "import sys; from momsearch.tasks import load; load({'name': 'seq_digits'}); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
    monkeypatch.setattr(digits.importlib.util, "find_spec", lambda name: None)  # the file cannot be found
    pixels, labels = digits.load_digits()
    assert np.array_equal(pixels, reference.data) and np.array_equal(labels, reference.target)


def test_copy_semantics():
    delay, length, symbols = 7, 3, 5
    task = load({"name": "copy", "params": {"delay": delay, "length": length, "symbols": symbols, "n_train": 20}})
    x, y = task.train
    assert x.shape == (20, 2 * length + delay, symbols + 2)
    tokens = x.argmax(-1)  # (B, T)
    assert torch.equal(x.sum(-1), torch.ones(x.shape[:2]))  # one-hot
    for b in range(len(x)):
        for t in range(x.shape[1]):
            if t < length:
                assert tokens[b, t] < symbols and y[b, t] == IGNORE
            elif t == length + delay - 1:
                assert tokens[b, t] == symbols + 1 and y[b, t] == IGNORE  # the cue
            elif t < length + delay:
                assert tokens[b, t] == symbols and y[b, t] == IGNORE
            else:
                assert tokens[b, t] == symbols and y[b, t] == tokens[b, t - length - delay]


def test_adding_semantics():
    task = load({"name": "adding", "params": {"length": 10, "n_train": 30}})
    x, y = task.train
    for b in range(len(x)):
        marked = [t for t in range(10) if x[b, t, 1] == 1.0]
        assert len(marked) == 2 and marked[0] < 5 <= marked[1]
        assert 0 <= x[b, :, 0].min() and x[b, :, 0].max() < 1
        expected = float(x[b, marked[0], 0].double() + x[b, marked[1], 0].double())
        assert abs(float(y[b, 0]) - expected) < 1e-6


@pytest.mark.parametrize("dim", [2, 3])
def test_circles_semantics(dim):
    task = load({"name": "circles", "params": {"dim": dim, "n_train": 400}})
    x, y = task.train
    r = x.double().norm(dim=1)  # (B,)
    assert (r[y == 0] <= 0.5 + 1e-6).all()
    assert ((r[y == 1] >= 1 - 1e-6) & (r[y == 1] <= 1.5 + 1e-6)).all()


def test_oscillator_semantics():
    task = load({"name": "oscillator", "params": {"length": 12, "n_train": 10}})
    x, times, y = task.train
    assert x.shape == (10, 11, 3) and y.shape == (10, 11, 2)
    assert torch.equal(y[:, :-1], x[:, 1:, :2])  # the target is the next observation
    gap = times.diff(dim=1)  # (B, T-1)
    assert torch.allclose(x[:, :-1, 2], gap, atol=1e-6)  # input carries the time to the next observation


def _evaluate_listops(tokens):
    """Reference evaluator: a stack machine over the token ids (0 pad, 1..10 digits, 11..14 ops, 15 close)."""
    ops = {11: max, 12: min, 13: lambda a: sorted(a)[(len(a) - 1) // 2], 14: lambda a: sum(a) % 10}
    stack = []
    for tok in tokens:
        if tok == 0:
            continue
        if tok in ops:
            stack.append([tok])
        elif tok == 15:
            op, *args = stack.pop()
            value = ops[op](args)
            if not stack:
                return value
            stack[-1].append(value)
        else:
            stack[-1].append(tok - 1)
    raise AssertionError("unclosed expression")


def test_listops_semantics():
    task = load({"name": "listops", "params": {"n_train": 100, "max_depth": 3, "max_length": 40}})
    x, y = task.train
    assert x.shape == (100, 40)
    for row, label in zip(x.tolist(), y.tolist(), strict=True):
        assert row[-1] == 15  # left-padded: the last step closes the expression
        assert _evaluate_listops(row) == label


def test_assoc_recall_semantics():
    pairs, vocab = 4, 6
    task = load({"name": "assoc_recall", "params": {"pairs": pairs, "vocab": vocab, "n_train": 50}})
    x, y = task.train
    assert x.shape == (50, 2 * pairs + 2) and task.input_size == 2 * vocab + 1 and task.output_size == vocab
    for row, label in zip(x.tolist(), y.tolist(), strict=True):
        keys, values = row[0:2 * pairs:2], row[1:2 * pairs:2]
        assert len(set(keys)) == pairs and row[-2] == 2 * vocab
        assert values[keys.index(row[-1])] - vocab == label


def test_loss_and_score_references():
    pred = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [5.0, -1.0]]], dtype=torch.float64)  # (1, 3, 2)
    y = torch.tensor([[0, IGNORE, 1]])  # (1, 3)
    task = Task("t", "accuracy", "sequence", "every", 1, 2, (), (), ())
    assert task.score(pred, y) == 0.5  # step 0 right, step 2 wrong, step 1 unscored
    logp = pred - pred.exp().sum(-1, keepdim=True).log()  # (1, 3, 2)
    expected = -(logp[0, 0, 0] + logp[0, 2, 1]) / 2
    assert torch.allclose(task.loss(pred, y), expected)
    reg = Task("r", "mse", "sequence", "last", 1, 2, (), (), ())
    p, t = torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.tensor([[0.0, 4.0]], dtype=torch.float64)
    assert reg.score(p, t) == pytest.approx((1.0 + 4.0) / 2)


# --- learnability: a small plain torch model beats chance clearly -------------------------------------------


class SmallModel(nn.Module):
    """GRU (embedding for tokens) or MLP for static inputs; readout of the last step or every step."""

    def __init__(self, task, hidden=32):
        super().__init__()
        self.task = task
        if task.input == "static":
            self.net = nn.Sequential(nn.Linear(task.input_size, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                     nn.Tanh())
        else:
            self.embed = nn.Embedding(task.input_size, hidden) if task.input == "tokens" else nn.Identity()
            width = hidden if task.input == "tokens" else task.input_size
            self.net = nn.GRU(width, hidden, batch_first=True)
        self.head = nn.Linear(hidden, task.output_size)

    def forward(self, x, times=None):
        if self.task.input == "static":
            return self.head(self.net(x))  # (B, O)
        h, _ = self.net(self.embed(x))  # (B, T, H)
        return self.head(h if self.task.target == "every" else h[:, -1])  # (B, T, O) or (B, O)


# small versions of each task and settings that learn in about a second on one thread
LEARN = {
    "seq_digits": ({}, {"epochs": 5, "lr": 1e-2}),
    "copy": ({"delay": 5, "length": 3, "symbols": 4, "n_train": 1000}, {"epochs": 10, "lr": 1e-2}),
    "adding": ({"length": 20}, {"epochs": 5, "lr": 1e-2}),
    "circles": ({}, {"epochs": 20, "lr": 1e-2}),
    "oscillator": ({"n_train": 400}, {"epochs": 5, "lr": 1e-2}),
    "listops": ({"max_depth": 1, "max_length": 8}, {"epochs": 10, "lr": 1e-2}),
    "assoc_recall": ({"pairs": 2, "vocab": 4}, {"epochs": 10, "lr": 1e-2}),
}


@pytest.mark.parametrize("name", TASKS)
def test_learnable(name):
    params, settings = LEARN.get(name, ({}, {"epochs": 5, "lr": 1e-2}))
    task = load({"name": name, "params": params})
    result = fit(SmallModel(task), task, settings, seed=0)
    assert result.status == "complete", result.reason
    y = task.test[-1]
    if task.metric == "accuracy":
        scored = y[y != IGNORE]
        majority = torch.bincount(scored).max().item() / scored.numel()
        assert result.metrics["test_accuracy"] > majority + 0.2
    else:
        variance = ((y - y.mean(dim=tuple(range(y.dim() - 1)))) ** 2).mean().item()  # predicting the mean
        assert result.metrics["test_mse"] < 0.5 * variance


# --- spec errors --------------------------------------------------------------------------------------------


def test_flat_and_nested_params_agree():
    a = load({"name": "circles", "params": {"n_train": 40, "dim": 3}})
    b = load({"name": "circles", "n_train": 40, "dim": 3})
    assert torch.equal(a.train[0], b.train[0])


@pytest.mark.parametrize("spec, match", [
    ({"name": "circels"}, "unknown task 'circels'.*did you mean 'circles'"),
    ({"name": "circles", "params": {"radius": 2}}, "task circles: unknown parameter 'radius'"),
    ({"name": "circles", "params": {"dim": 1}}, r"task circles: dim=1: must be int in \[2, inf\)"),
    ({"name": "copy", "params": {"delay": "x"}}, "task copy: delay='x'"),
    ({"name": "circles", "module": "a:b"}, "exactly one of name, module, npz"),
    ({}, "exactly one of"),
    ({"name": "circles", "params": {"dim": 3}, "n_train": 5}, "not both"),
    ({"name": "assoc_recall", "params": {"pairs": 5, "vocab": 4}}, "pairs=5: must be <= vocab=4"),
    ({"npz": "x.npz", "params": {"a": 1}}, "an .npz task takes none"),
])
def test_spec_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        load(spec)


# --- user tasks ---------------------------------------------------------------------------------------------

USER_MODULE = '''
import numpy as np
import torch


class Boom(Exception):
    pass


def classify(n=30, seed=0, steps=5):
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "val", "test"):
        out["x_" + split] = rng.standard_normal((n, steps, 2))
        out["y_" + split] = rng.integers(0, 3, n)
    return out


def timed(n=20):
    data = classify(n)
    data = {k: torch.as_tensor(v) for k, v in data.items()}
    for split in ("train", "val", "test"):
        data["times_" + split] = torch.arange(5.0).repeat(n, 1)
        data["y_" + split] = torch.randn(n, 5, 1)
    data["target"] = "every"
    return data


def tokens(n=10):
    out = {}
    for split in ("train", "val", "test"):
        out["x_" + split] = np.arange(n * 4).reshape(n, 4) % 7
        out["y_" + split] = np.arange(n) % 2
    out["input_size"] = 9
    return out


def broken(**changes):
    data = classify()
    data.update(changes)
    return data


def not_a_dict():
    return [1, 2]


def boom():
    raise Boom("inside the user's function")


value = 3
'''


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_tasks_mod.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_tasks_mod"
    sys.modules.pop("user_tasks_mod", None)


def test_user_module_happy_paths(user_module):
    task = load({"module": f"{user_module}:classify", "params": {"n": 12, "steps": 4}})
    assert (task.metric, task.input, task.target) == ("accuracy", "sequence", "last")
    assert task.train[0].shape == (12, 4, 2) and task.train[0].dtype == torch.float32  # float64 -> float32
    assert task.input_size == 2 and task.output_size == 3 and task.params == {"n": 12, "steps": 4}
    timed = load({"module": f"{user_module}:timed"})
    assert timed.has_times and (timed.metric, timed.target, timed.output_size) == ("mse", "every", 1)
    tokens = load({"module": f"{user_module}:tokens"})
    assert (tokens.input, tokens.input_size, tokens.output_size) == ("tokens", 9, 2)


def test_user_module_trains_with_times(user_module):
    class UsesTimes(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def forward(self, x, times):
            return self.lin(torch.cat([x, times.unsqueeze(-1)], dim=-1))  # (B, T, 1)

    task = load({"module": f"{user_module}:timed"})
    assert fit(UsesTimes(), task, {"epochs": 1}).status == "complete"


@pytest.mark.parametrize("changes, match", [
    ({"y_val": np.zeros(30)}, r"y_val must be integer labels \(B,\) for accuracy"),
    ({"x_train": np.zeros((30, 5, 2), dtype=np.int64)}, r"x_train must be int \(B, T\) tokens, float \(B, T, I\)"),
    ({"x_val": np.zeros((30, 5), dtype=np.int64)}, r"x_val must be float \(B, T, I\) for sequence input \(inferred"),
    ({"x_val": np.zeros((30, 5, 3))}, "x features differ between splits"),
    ({"y_test": np.zeros(29, dtype=np.int64)}, "y_test has 29 rows but x has 30"),
    ({"x_train": [[1.0]]}, "x_train must be a numpy array or torch tensor, got list"),
    ({"x_test": np.array(["a"] * 30)}, "x_test must hold numbers"),
    ({"y_train": np.full(30, -3)}, "labels must be >= 0"),
    ({"x_train": np.full((30, 5, 2), np.nan)}, "x_train holds non-finite values"),
    ({"metric": "f1"}, "metric='f1': must be one of accuracy, mse"),
    ({"output_size": 2}, "output_size=2: must be an int >= 3"),
    ({"times_train": np.zeros((30, 5))}, "times_train, times_val and times_test together"),
    ({"y_train": np.zeros((30, 4), dtype=np.int64), "target": "every"}, "y_train has 4 steps but x has 5"),
    ({"x_tran": np.zeros(3)}, "unknown key.*'x_tran'"),
])
def test_user_module_shape_and_dtype_errors(user_module, changes, match):
    with pytest.raises(TaskError, match=match):
        load({"module": f"{user_module}:broken", "params": changes})


def test_user_module_times_errors(user_module):
    bad = {f"times_{s}": np.zeros((30, 4)) for s in SPLITS}
    with pytest.raises(TaskError, match=r"times_train must be float \(B, T\) = \(30, 5\)"):
        load({"module": f"{user_module}:broken", "params": bad})
    backwards = {f"times_{s}": np.tile(np.arange(5.0)[::-1], (30, 1)) for s in SPLITS}
    with pytest.raises(TaskError, match="non-decreasing"):
        load({"module": f"{user_module}:broken", "params": backwards})


@pytest.mark.parametrize("target, match", [
    ("user_tasks_mod", "expected 'package.module:function'"),
    ("no_such_module_xyz:fn", "no module named 'no_such_module_xyz'"),
    ("user_tasks_mod:missing", "has no function 'missing'"),
    ("user_tasks_mod:value", "has no function 'value'"),
    ("user_tasks_mod:not_a_dict", "expected a dict with keys x_train"),
])
def test_user_module_signature_errors(user_module, target, match):
    with pytest.raises(TaskError, match=match):
        load({"module": target})


def test_user_module_wrong_params_and_own_exceptions(user_module):
    with pytest.raises(TaskError, match="cannot call it with params"):
        load({"module": f"{user_module}:classify", "params": {"size": 3}})
    with pytest.raises(Exception, match="inside the user's function") as info:
        load({"module": f"{user_module}:boom"})
    assert type(info.value).__name__ == "Boom"  # propagated as-is


def _arrays(n=16):
    rng = np.random.default_rng(0)
    data = {}
    for split in SPLITS:
        data[f"x_{split}"] = rng.standard_normal((n, 3)).astype(np.float32)
        data[f"y_{split}"] = rng.standard_normal(n).astype(np.float32)
    return data


def test_npz_happy_path(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, **_arrays(), metric=np.array("mse"))
    task = load({"npz": str(path)})
    assert (task.name, task.metric, task.input, task.target) == (str(path), "mse", "static", "static")
    assert task.train[1].shape == (16, 1) and task.input_size == 3 and task.output_size == 1


@pytest.mark.parametrize("change, match", [
    ({"y_val": None}, "missing key.*y_val"),
    ({"x_train": np.zeros((16, 3), dtype=np.int32)}, r"x_val must be integer token ids \(B, T\) for tokens input "
                                                      r"\(inferred from x_train\)"),
    ({"x_val": np.zeros((16, 3), dtype=np.int32), "input": np.array("static")}, r"x_val must be float \(B, I\)"),
    ({"y_test": np.zeros((16, 2, 2, 2), dtype=np.float32)}, r"y_test must be float targets \(B, O\)"),
    ({"input": np.array("pictures")}, "input='pictures': must be one of sequence, tokens, static"),
])
def test_npz_errors(tmp_path, change, match):
    data = _arrays()
    data.update(change)
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "bad.npz"
    np.savez(path, **data)
    with pytest.raises(TaskError, match=match):
        load({"npz": str(path)})


def test_npz_missing_or_unreadable(tmp_path):
    with pytest.raises(TaskError, match="no such file"):
        load({"npz": str(tmp_path / "nope.npz")})
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(TaskError, match="not a readable .npz file"):
        load({"npz": str(tmp_path / "junk.npz")})
