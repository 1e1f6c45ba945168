"""The training loop: settings, determinism, callbacks, failures, early stopping, best weights."""

import pytest
import torch
from torch import nn

from momsearch import catalog
from momsearch.errors import ConfigError, NFEBudgetExceeded
from momsearch.tasks import load
from momsearch.train import FitResult, fit, resolve_device


@pytest.fixture(scope="module")
def circles():
    return load({"name": "circles", "params": {"n_train": 128}})


def mlp():
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))


class Calls(nn.Module):
    """Wraps a model; ``hook(call_number, output)`` may replace the output or raise."""

    def __init__(self, hook):
        super().__init__()
        self.inner, self.hook, self.calls = mlp(), hook, 0

    def forward(self, x):
        self.calls += 1
        return self.hook(self.calls, self.inner(x))


def test_complete_run_shape_of_result(circles):
    result = fit(mlp(), circles, {"epochs": 3, "batch_size": 32, "lr": 1e-2})
    assert isinstance(result, FitResult) and result.status == "complete" and result.reason is None
    assert [e["epoch"] for e in result.history] == [1, 2, 3]
    assert set(result.history[0]) == {"epoch", "accuracy", "loss", "train_loss"}
    assert {"accuracy", "loss", "test_accuracy", "test_loss", "train_loss"} <= set(result.metrics)
    assert "mse" not in result.metrics and "test_mse" not in result.metrics
    assert result.metrics["epochs"] == 3


def test_same_seed_same_metrics_on_cpu(circles):
    def run(seed):
        torch.manual_seed(123)  # same initial weights
        model = nn.Sequential(nn.Linear(2, 16), nn.Dropout(0.3), nn.Tanh(), nn.Linear(16, 2))
        return fit(model, circles, {"epochs": 2, "batch_size": 16}, seed=seed, device="cpu")

    a, b, c = run(0), run(0), run(1)
    timing = {"device_seconds", "wall_seconds", "peak_memory_mb"}
    assert {k: v for k, v in a.metrics.items() if k not in timing} == {
        k: v for k, v in b.metrics.items() if k not in timing}
    assert a.history == b.history
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert a.history != c.history  # the seed drives the shuffle and dropout


def test_fit_restores_the_callers_random_state(circles):
    model = mlp()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    fit(model, circles, {"epochs": 1}, seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_callbacks_get_each_epochs_validation_metrics(circles):
    seen = []
    result = fit(mlp(), circles, {"epochs": 3}, callbacks=[lambda epoch, m: seen.append((epoch, m))])
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert [m for _, m in seen] == result.history


def test_callback_exception_propagates_unchanged(circles):
    class Pruned(Exception):
        pass

    error = Pruned("stop at 2")

    def callback(epoch, metrics):
        if epoch == 2:
            raise error

    with pytest.raises(Pruned) as info:
        fit(mlp(), circles, {"epochs": 5}, callbacks=[callback])
    assert info.value is error


@pytest.mark.parametrize("call, reason", [
    (1, "non-finite loss at epoch 1, batch 1"),
    (3, "non-finite loss at epoch 1, batch 3"),
    (6, "non-finite loss at epoch 2, batch 1"),  # 4 batches + 1 validation pass in epoch 1
])
def test_nan_ends_the_run_failed(circles, call, reason):
    model = Calls(lambda n, out: out * float("nan") if n >= call else out)
    result = fit(model, circles, {"epochs": 3, "batch_size": 32})
    assert (result.status, result.reason) == ("failed", reason)
    assert len(result.history) == (call - 1) // 5
    assert (result.state_dict is None) == (not result.history)
    assert result.metrics["params"] == 82 and "test_accuracy" not in result.metrics


def test_nan_in_validation_only_fails_too(circles):
    def hook(n, out):
        return out * float("nan") if not torch.is_grad_enabled() else out

    result = fit(Calls(hook), circles, {"epochs": 2})
    assert (result.status, result.reason) == ("failed", "non-finite val loss at epoch 1")


@pytest.mark.parametrize("error, reason", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore text"),
     "CUDA out of memory: CUDA out of memory. Tried to allocate 2.00 GiB (epoch 1, batch 2)"),
    (NFEBudgetExceeded("max_nfe=10: one forward ODE solve needed more than 10"),
     "NFE budget exceeded: max_nfe=10: one forward ODE solve needed more than 10 (epoch 1, batch 2)"),
])
def test_out_of_memory_and_nfe_budget_end_the_run_failed(circles, error, reason):
    def hook(n, out):
        if n == 2:
            raise error
        return out

    result = fit(Calls(hook), circles, {"epochs": 2})
    assert (result.status, result.reason) == ("failed", reason)


def test_other_exceptions_propagate(circles):
    def hook(n, out):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        fit(Calls(hook), circles, {"epochs": 1})


def test_early_stopping(circles):
    # a model that never improves (lr ~ 0) stops after `patience` stale epochs
    result = fit(mlp(), circles, {"epochs": 10, "early_stopping": 2, "optimizer": "sgd", "lr": 1e-12})
    assert result.status == "complete" and result.metrics["epochs"] == len(result.history) == 3


def test_model_left_holding_the_best_epoch(circles):
    snapshots = []
    model = mlp()

    def callback(epoch, metrics):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    result = fit(model, circles, {"epochs": 4, "lr": 0.05}, callbacks=[callback])
    best = max(range(4), key=lambda i: (result.history[i]["accuracy"], -i))
    assert result.metrics["accuracy"] == result.history[best]["accuracy"]
    assert result.metrics["loss"] == result.history[best]["loss"]
    assert result.metrics["train_loss"] == result.history[-1]["train_loss"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, snapshots[best][key]) and torch.equal(value, result.state_dict[key])
    with torch.no_grad():
        x, y = circles.val
        assert circles.score(model(x), y) == result.metrics["accuracy"]


def test_max_batches_caps_an_epoch(circles):
    model = Calls(lambda n, out: out)
    fit(model, circles, {"epochs": 2, "batch_size": 16, "max_batches": 3})
    assert model.calls == 2 * (3 + 1) + 1  # per epoch 3 batches + one validation pass (32 rows); one test pass


@pytest.mark.parametrize("optimizer", catalog.TRAIN["optimizer"].choices)
@pytest.mark.parametrize("schedule", catalog.TRAIN["schedule"].choices)
def test_every_optimizer_and_schedule(circles, optimizer, schedule):
    result = fit(mlp(), circles, {"optimizer": optimizer, "schedule": schedule, "epochs": 3, "clip": 0.0,
                                  "weight_decay": 1e-4, "max_batches": 1})
    assert result.status == "complete"


def test_settings_are_checked(circles):
    with pytest.raises(ConfigError, match="train: unknown parameter 'epoch'.*did you mean 'epochs'"):
        fit(mlp(), circles, {"epoch": 3})
    with pytest.raises(ConfigError, match="train: optimizer"):
        fit(mlp(), circles, {"optimizer": "lbfgs"})
    with pytest.raises(ConfigError, match=r"train: lr=0.0: must be float in \(0, inf\)"):
        fit(mlp(), circles, {"lr": 0.0})


def test_times_reach_the_model():
    task = load({"name": "oscillator", "params": {"n_train": 16, "length": 6}})
    seen = []

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x, times):
            seen.append(times.shape[:2] == x.shape[:2])
            return self.lin(x)  # (B, T, 2)

    result = fit(Model(), task, {"epochs": 1})
    assert result.status == "complete" and all(seen) and {"mse", "test_mse"} <= set(result.metrics)


def test_progress_bar(circles, capsys):
    fit(mlp(), circles, {"epochs": 2}, progress=True)
    assert "train" in capsys.readouterr().err


def test_device_choice():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda(circles):
    result = fit(mlp(), circles, {"epochs": 2}, device="cuda")
    assert result.status == "complete" and result.metrics["device"].startswith("cuda:0 ")
    assert result.metrics["device_seconds"] > 0 and result.metrics["peak_memory_mb"] > 0
    assert all(v.device.type == "cpu" for v in result.state_dict.values())
