"""``oscillator``: irregularly sampled damped oscillators (2-D spirals); forecast the next observation."""

from __future__ import annotations

import numpy as np

from .splits import eval_size, split

HORIZON = 10.0  # observation times are uniform on [0, HORIZON)
NOISE = 0.01  # standard deviation of the observation noise


def oscillator(length: int = 40, n_train: int = 800, seed: int = 0) -> dict[str, np.ndarray]:
    """Damped oscillations ``r(t) = A exp(-gamma t)``, ``angle(t) = omega t + phi`` observed at random times.

    Each step's input is the noisy observation ``(r cos, r sin)`` and the time until the next observation;
    its target is that next observation. The model also receives the observation times.

    Args:
        length: observations per series (the model sees ``length - 1`` steps).
        n_train: training series (validation and test: a quarter each).
        seed: seed of the generation.

    Returns:
        Arrays ``x_*`` (B, length - 1, 3), ``times_*`` (B, length - 1) and ``y_*`` (B, length - 1, 2),
        all float32, for train, val and test.
    """
    n_eval = eval_size(n_train)
    n = n_train + 2 * n_eval
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(0.5, 1.5, size=(n, 1))  # (N, 1)
    damping = rng.uniform(0.05, 0.3, size=(n, 1))  # (N, 1)
    omega = rng.uniform(0.5, 2.0, size=(n, 1))  # (N, 1)
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))  # (N, 1)
    times = np.sort(rng.uniform(0.0, HORIZON, size=(n, length)), axis=1)  # (N, L)
    radius = amplitude * np.exp(-damping * times)  # (N, L)
    angle = omega * times + phase  # (N, L)
    obs = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)  # (N, L, 2)
    obs += NOISE * rng.standard_normal(obs.shape)
    gap = np.diff(times, axis=1)[:, :, None]  # (N, L-1, 1)
    x = np.concatenate([obs[:, :-1], gap], axis=-1).astype(np.float32)  # (N, L-1, 3)
    y = obs[:, 1:].astype(np.float32)  # (N, L-1, 2)
    return split(n_train, n_eval, x=x, times=times[:, :-1].astype(np.float32), y=y)
