"""Catalog of training settings (``train:`` in a study file; searchable under ``space.train``)."""

from .params import Param

TRAIN = {
    "optimizer": Param("str", "adam", "optimizer", choices=("adam", "adamw", "rmsprop", "sgd")),
    "lr": Param("float", 1e-3, "learning rate", low=0.0, low_open=True),
    "weight_decay": Param("float", 0.0, "weight decay", low=0.0),
    "momentum": Param("float", 0.9, "optimizer momentum (sgd, rmsprop)", low=0.0, high=1.0, high_open=True),
    "clip": Param("float", 1.0, "gradient-norm clipping (0: off)", low=0.0),
    "epochs": Param("int", 5, "training epochs", low=1),
    "batch_size": Param("int", 64, "batch size", low=1),
    "schedule": Param("str", "none", "per-epoch learning-rate schedule (step: x0.1 every third of the epochs)",
                      choices=("none", "cosine", "step")),
    "early_stopping": Param("int", 0, "stop after this many epochs without validation gain (0: off)", low=0),
    "max_batches": Param("int", 0, "cap on training batches per epoch (0: all)", low=0),
    "seed": Param("int", None, "seed of initialisation and training (null: derived from the study seed and the "
                  "trial number); a list of seeds repeats each configuration", low=0, nullable=True),
}

METRICS = {
    "accuracy": ("maximize", "validation accuracy (classification tasks)"),
    "mse": ("minimize", "validation mean squared error (regression tasks)"),
    "loss": ("minimize", "validation loss"),
    "test_accuracy": ("maximize", "test accuracy"),
    "test_mse": ("minimize", "test mean squared error"),
    "test_loss": ("minimize", "test loss"),
    "train_loss": ("minimize", "training loss of the last epoch"),
    "nfe_forward": ("minimize", "mean forward function evaluations per iteration (ODE blocks)"),
    "nfe_backward": ("minimize", "mean backward function evaluations per iteration (ODE blocks, adjoint)"),
    "nfe_total": ("minimize", "function evaluations over the whole training (ODE blocks; forward only "
                             "when the backward is not measured)"),
    "device_seconds": ("minimize", "training time synchronised on the device (CUDA events; CPU: process time)"),
    "wall_seconds": ("minimize", "wall-clock training time (the same training iterations)"),
    "params": ("minimize", "trainable parameters"),
    "peak_memory_mb": ("minimize", "peak memory in MiB (CUDA: max allocated by torch; CPU: peak RSS of the process)"),
}
