"""Catalog of the built-in tasks and their parameters (plain data; the data itself lives in momsearch.tasks).

``metric`` is the task's own metric (recorded under that name); ``input`` is ``sequence`` (B, T, I),
``tokens`` (B, T) integer ids, or ``static`` (B, I); ``target`` is ``last`` (one label per sequence),
``every`` (a label per step) or ``static``. Tasks with ``n_train`` get validation and test splits of
``n_train // 4`` examples each. ``make`` is the generating function, ``module:function`` inside
``momsearch.tasks`` (imported only when the task is loaded): this table is the one registry of built-in tasks.
"""

from .params import Param

SEED = Param("int", 0, "seed of the data generation and the train/val/test split", low=0)


def _size(default: int, doc: str = "training examples") -> Param:
    return Param("int", default, doc, low=1)


TASKS = {
    "seq_digits": {
        "make": "digits:seq_digits",
        "doc": "scikit-learn digits as 64-step pixel sequences (pixel MNIST in miniature)",
        "metric": "accuracy", "input": "sequence", "target": "last",
        "params": {
            "permuted": Param("bool", False, "apply a fixed seeded pixel permutation (pMNIST)"),
            "seed": SEED,
        },
    },
    "copy": {
        "make": "copy_memory:copy_memory",
        "doc": "copy memory: reproduce a short symbol string after a long blank delay",
        "metric": "accuracy", "input": "sequence", "target": "every",
        "params": {
            "delay": Param("int", 50, "blank steps between the string and the recall phase (cue included)", low=1),
            "length": Param("int", 10, "symbols to remember", low=1),
            "symbols": Param("int", 8, "alphabet size", low=2),
            "n_train": _size(2000), "seed": SEED,
        },
    },
    "adding": {
        "make": "adding:adding",
        "doc": "adding problem: sum of the two marked values of a random sequence",
        "metric": "mse", "input": "sequence", "target": "last",
        "params": {"length": Param("int", 100, "sequence length", low=2), "n_train": _size(2000), "seed": SEED},
    },
    "circles": {
        "make": "circles:circles",
        "doc": "nested circles/spheres: inner ball r <= 0.5 vs shell 1 <= r <= 1.5",
        "metric": "accuracy", "input": "static", "target": "static",
        "params": {"dim": Param("int", 2, "dimension of the points", low=2), "n_train": _size(1000), "seed": SEED},
    },
    "oscillator": {
        "make": "oscillator:oscillator",
        "doc": "irregularly sampled damped oscillators: forecast the next observation",
        "metric": "mse", "input": "sequence", "target": "every",
        "params": {"length": Param("int", 40, "observations per series", low=3), "n_train": _size(800), "seed": SEED},
    },
    "listops": {
        "make": "listops:listops",
        "doc": "synthetic ListOps: nested MAX/MIN/MED/SUM-mod-10 expressions, answer 0-9",
        "metric": "accuracy", "input": "tokens", "target": "last",
        "params": {
            "max_depth": Param("int", 3, "nesting depth", low=1),
            "max_length": Param("int", 64, "maximum tokens per expression", low=8),
            "n_train": _size(2000), "seed": SEED,
        },
    },
    "assoc_recall": {
        "make": "assoc_recall:assoc_recall",
        "doc": "associative recall: key-value pairs, then a key; answer its value",
        "metric": "accuracy", "input": "tokens", "target": "last",
        "params": {
            "pairs": Param("int", 8, "key-value pairs per sequence", low=1),
            "vocab": Param("int", 16, "keys and values drawn from this many symbols", low=2),
            "n_train": _size(2000), "seed": SEED,
        },
    },
}

USER_TASKS = {
    "module": "{module: 'pkg.mod:fn', params: {...}}: fn(**params) returns the task's arrays "
              "(see momsearch.tasks.user)",
    "npz": "{npz: path}: arrays x_train, y_train, x_val, y_val, x_test, y_test (optional times_*) in one .npz file",
}
