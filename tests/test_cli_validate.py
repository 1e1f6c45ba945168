"""``momsearch validate`` and ``momsearch list``: output, exit codes, no torch import, speed.

``validate`` imports optuna only to check a sampler or pruner other than the defaults (it builds them once);
``list`` imports neither."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(str(p.relative_to(ROOT)) for pattern in ("search_spaces/*.yaml", "studies/*.yaml")
               for p in ROOT.glob(pattern))

# parse + validate inside one fresh interpreter, timed there; then report which heavy modules got imported
# (optuna's own import, needed for the files that name a sampler or pruner, is timed apart)
PROBE = """
import contextlib, io, json, sys, time
from momsearch.cli import main
timings, codes = {}, {}
if "--warm" in sys.argv:
    sys.argv.remove("--warm")
    import optuna.samplers, optuna.pruners
for path in sys.argv[1:]:
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        codes[path] = main(["validate", path])
        timings[path] = time.perf_counter() - start
print(json.dumps({"codes": codes, "timings": timings,
                  "heavy": sorted(m for m in ("torch", "optuna", "torchdiffeq") if m in sys.modules)}))
"""


def momsearch(*args):
    return subprocess.run([sys.executable, "-m", "momsearch", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_validate_is_fast_and_never_imports_torch():
    out = subprocess.run([sys.executable, "-c", PROBE, *FILES], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    result = json.loads(out.stdout)
    assert "torch" not in result["heavy"] and "torchdiffeq" not in result["heavy"]
    assert set(result["codes"].values()) == {0}
    warm = subprocess.run([sys.executable, "-c", PROBE, "--warm", *FILES], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    timings = json.loads(warm.stdout)["timings"]
    assert max(timings.values()) < 0.5, timings


def test_validate_of_a_default_study_imports_neither_torch_nor_optuna(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntask: adding\nobjectives: [mse]\nspace: {block: {ode: {rule: [plain]}}}\n")
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), "search_spaces/all_blocks.yaml"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(out.stdout)
    assert result["heavy"] == [] and set(result["codes"].values()) == {0}


def test_validate_prints_tree_count_and_size():
    done = momsearch("validate", "search_spaces/all_blocks.yaml")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "search_spaces/all_blocks.yaml: valid space file"
    assert "block: one of rnn, ode, attention" in lines
    assert lines[-1].endswith("space size: 254 configurations")
    assert "parameters (" in lines[-1]


def test_validate_study_file_prints_its_summary(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntask: adding\nobjectives: [mse]\nspace: {block: {ode: {rule: [plain, adam]}}}\n")
    done = momsearch("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert "valid study file 's'" in done.stdout and "objectives: mse (minimize)" in done.stdout
    assert done.stdout.splitlines()[-1].endswith("space size: 2 configurations")


@pytest.mark.parametrize("text, message", [
    ("block: {rnn: {rule: {heavy_ball: {mu: 1.5}}}}", "space.block.rnn.rule.heavy_ball.mu: 1.5 is outside"),
    ("block:\n  rnn: {}\n  rnn: {}\n", "line 3, column 3: duplicate key 'rnn'"),
    ("block: !!python/object:os.system {}\n", "is not allowed"),
])
def test_validate_errors_are_one_line_exit_2(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    done = momsearch("validate", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("momsearch validate: error: ") and message in done.stderr


def test_validate_missing_file():
    done = momsearch("validate", "no/such/file.yaml")
    assert done.returncode == 2 and "file not found" in done.stderr


def test_list_prints_the_catalog_without_torch():
    out = subprocess.run([sys.executable, "-c", "import sys; from momsearch.cli import main; rc = main(['list']);"
                          "print('HEAVY', [m for m in ('torch', 'optuna') if m in sys.modules], rc)"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    text = out.stdout
    assert text.splitlines()[-1] == "HEAVY [] 0"
    for expected in ("blocks (space.block.<kind>):", "  rnn: ", "cell: one of: tanh, lstm, gru, orthogonal",
                     "      heavy_ball:", "        mu: float in [0, 1), default 0.6",
                     "(kind: softmax allows only: plain)",
                     "tasks (task:):", "  seq_digits: ", "training settings", "    ", "metrics (objectives:):",
                     "  accuracy: maximize", "study settings (study:):"):
        assert expected in text, expected
    only = momsearch("list", "metrics")
    assert only.returncode == 0 and only.stdout.startswith("metrics (objectives:):")
    assert "blocks (space.block" not in only.stdout
