"""The search layer: the only package that imports optuna (space adapter, objective, study, storage)."""
