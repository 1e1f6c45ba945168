"""Mistaken and hostile input: one clear line and exit 2, nothing leaked, nothing slow or huge.

Every hostile file is generated here: an alias bomb, 10,000 levels of nesting, a million-item list, long
values, storage URLs with passwords, labels far outside the classes, broken ``.npz`` files.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from momsearch.cli import main
from momsearch.errors import SpecError, TaskError
from momsearch.redact import redact, scrub
from momsearch.spec.yaml_io import MAX_DEPTH, StrictLoader, parse_yaml

ROOT = Path(__file__).resolve().parents[1]
STUDY = "name: s\ntask: adding\nobjectives: [mse]\nspace: {block: {ode: {rule: [plain, adam]}}}\n"


def _one_line(capsys, code, match=""):
    """The CLI failed with exit 2 and exactly one line on stderr containing ``match``; returns the line."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


def _validate(tmp_path, text, name="f.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return main(["validate", str(path)])


# --- YAML ---------------------------------------------------------------------------------------------------


def test_yaml_loader_is_libyaml_with_the_same_strictness():
    if yaml.__with_libyaml__:
        assert issubclass(StrictLoader, yaml.CSafeLoader)
    with pytest.raises(SpecError, match=r"f.yaml: line 3, column 1: duplicate key 'a'"):
        parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    with pytest.raises(SpecError, match=r"line 2, column 4: tag .*python/object.* is not allowed"):
        parse_yaml("a: 1\nb: !!python/object/apply:os.system [echo hi]\n", "f.yaml")
    with pytest.raises(SpecError, match=r"line 2"):
        parse_yaml("a: [1, 2\nb: 3\n", "f.yaml")
    assert parse_yaml("a: &x {b: 1}\nc: *x\n", "f.yaml") == {"a": {"b": 1}, "c": {"b": 1}}  # small aliases work


def _alias_bomb(levels=9, width=9):
    lines = [f"      l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels + 1):
        lines.append(f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines)


def test_alias_bomb_in_task_params_is_refused_at_once(tmp_path, capsys):
    text = ("name: s\ntask:\n  module: mypkg.tasks:make\n  params:\n    bomb:\n" + _alias_bomb() + "\n"
            "objectives: [mse]\nspace: {block: {ode: {rule: [plain]}}}\n")
    assert len(text) < 1000  # 9**10 values once expanded
    start = time.perf_counter()
    code = _validate(tmp_path, text)
    assert time.perf_counter() - start < 5
    _one_line(capsys, code, "values (counting each alias")


def test_an_alias_to_its_own_container_is_refused(tmp_path, capsys):
    _one_line(capsys, _validate(tmp_path, STUDY + "train: &t [1, *t]\n"), "alias *t")


@pytest.mark.parametrize("opening, closing", [("{a: ", "}"), ("[", "]"), ("- ", "")])
def test_ten_thousand_levels_of_nesting_are_one_line(tmp_path, capsys, opening, closing):
    if opening == "- ":
        text = "- " * 10_000 + "1\n"  # compact block sequences
    else:
        text = "x: " + opening * 10_000 + "1" + closing * 10_000 + "\n"
    start = time.perf_counter()
    code = _validate(tmp_path, text)
    assert time.perf_counter() - start < 5
    _one_line(capsys, code, f"nested more than {MAX_DEPTH} levels deep")


@pytest.mark.parametrize("style", ["flow", "block"])
def test_a_million_item_list_is_refused_in_seconds_with_a_short_message(tmp_path, capsys, style):
    items = ["7"] * 1_000_000
    body = "[" + ", ".join(items) + "]" if style == "flow" else "\n" + "".join(f"  - {i}\n" for i in items)
    start = time.perf_counter()
    code = _validate(tmp_path, STUDY + "train:\n  epochs: " + body + "\n")
    assert time.perf_counter() - start < 5
    assert len(_one_line(capsys, code)) < 300


def test_long_lists_and_values_are_quoted_to_about_100_characters(tmp_path, capsys):
    long_list = "[" + ", ".join(["123456"] * 50_000) + "]"  # under every limit: parsed, then refused
    start = time.perf_counter()
    code = _validate(tmp_path, STUDY.replace("name: s", f"name: {long_list}"))
    assert time.perf_counter() - start < 5
    err = _one_line(capsys, code, "name: [123456, 123456")
    assert len(err) < 300 and "characters" in err
    err = _one_line(capsys, _validate(tmp_path, STUDY.replace("name: s", "name: '" + "x" * 5000 + "'")), "name:")
    assert len(err) < 300
    err = _one_line(capsys, _validate(tmp_path, STUDY + "study: {sampler: " + "T" * 20_000 + "}\n"), "sampler")
    assert len(err) < 600


def test_a_huge_or_binary_file_is_one_line(tmp_path, capsys):
    (tmp_path / "big.yaml").write_bytes(b"#" * 3_000_000)
    _one_line(capsys, main(["validate", str(tmp_path / "big.yaml")]), "larger than")
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)) * 10)
    _one_line(capsys, main(["validate", str(tmp_path / "bin.yaml")]), "not UTF-8")
    _one_line(capsys, main(["validate", str(tmp_path)]), "is a directory")


# --- validate checks what run would refuse -------------------------------------------------------------------


@pytest.mark.parametrize("study, match", [
    ("sampler: Nope", "study.sampler: unknown sampler 'Nope'"),
    ("sampler: {name: TPESamplr}", "did you mean 'TPESampler'"),
    ("sampler: {name: TPESampler, n_startupp: 3}", "study.sampler.n_startupp: TPESampler has no argument"),
    ("sampler: {name: RandomSampler, seed: 4294967296}", "study.sampler"),
    ("pruner: Nope", "study.pruner: unknown pruner 'Nope'"),
    ("pruner: {name: MedianPruner, warmup: 3}", "study.pruner.warmup: MedianPruner has no argument"),
    ("pruner: {name: MedianPruner, n_startup_trials: -1}", "study.pruner"),
    ("seed: 4294967296", "study.seed: 4294967296 is outside the valid range"),
    ("seed: -1", "study.seed"),
    ("{heartbeat_interval: 60, grace_period: 60}", "study.grace_period: 60 must be greater than"),
    ("{heartbeat_interval: 60, grace_period: 30}", "study.grace_period"),
])
def test_validate_refuses_study_settings_run_would_refuse(tmp_path, capsys, study, match):
    section = f"study: {study}\n" if study.startswith("{") else f"study:\n  {study}\n"
    _one_line(capsys, _validate(tmp_path, STUDY + section), match)


@pytest.mark.parametrize("name, match", [
    ("x" * 300, "300 characters long"), ("'..'", "must start with"), ("'.'", "must start with"),
    ("'.hidden'", "must start with"), ("a/b", "path separators"), ("'../up'", "path separators"),
])
def test_validate_refuses_names_that_are_not_a_folder_name(tmp_path, capsys, name, match):
    _one_line(capsys, _validate(tmp_path, STUDY.replace("name: s", f"name: {name}")), match)


def test_report_refuses_a_dotted_study_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line(capsys, main(["report", ".."]), "neither a study file nor a valid study name")
    assert not (tmp_path / "report").exists()


def test_validate_with_a_sampler_imports_optuna_but_never_torch(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY + "study: {sampler: {name: RandomSampler, seed: 1}, pruner: {name: NopPruner}}\n")
    probe = ("import sys; from momsearch.cli import main; rc = main(['validate', sys.argv[1]]); "
             "print('TORCH', 'torch' in sys.modules, rc)")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "TORCH False 0", done.stderr


# --- run's flags go through the same checks; nothing runs on a bad one -----------------------------------------


@pytest.mark.parametrize("flags, match", [
    (["--timeout", "0"], "--timeout: 0.0 is outside"), (["--timeout", "-5"], "--timeout: -5.0"),
    (["--device", "foo"], "--device: 'foo' is not auto, cpu, cuda or cuda:N"), (["--jobs", "0"], "--jobs: 0"),
    (["--threads", "0"], "--threads: 0"), (["--n-trials", "0"], "--n-trials: 0"),
    (["--timeout", "abc"], "--timeout: invalid float value"),
])
def test_run_flags_are_checked_before_anything_runs(tmp_path, capsys, flags, match):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    _one_line(capsys, main(["run", str(path), "--out", str(tmp_path / "out"), *flags]), match)
    assert not (tmp_path / "out").exists()


def test_an_unavailable_device_is_refused_before_any_trial(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        device, match = f"cuda:{torch.cuda.device_count()}", "CUDA device(s)"
    else:
        device, match = "cuda", "no CUDA device is available"
    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    _one_line(capsys, main(["run", str(path), "--out", str(tmp_path / "out"), "--device", device]), match)
    path.write_text(STUDY + f"study: {{device: '{device}'}}\n")
    _one_line(capsys, main(["run", str(path), "--out", str(tmp_path / "out")]), "study.device")
    assert not (tmp_path / "out").exists()


# --- data ---------------------------------------------------------------------------------------------------


def _arrays(n=24, classes=3):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5, 2)).astype(np.float32)
    y = np.arange(n) % classes
    return {"x_train": x, "y_train": y, "x_val": x, "y_val": y.copy(), "x_test": x, "y_test": y.copy()}


def test_labels_must_lie_in_the_classes_seen_in_training():
    from momsearch.tasks.arrays import MAX_CLASSES, from_arrays

    data = _arrays()
    data["y_test"][0] = 3
    with pytest.raises(TaskError, match=r"y_test holds label 3, but there are 3 classes"):
        from_arrays("t", data)
    assert from_arrays("t", {**data, "output_size": 4}).output_size == 4  # declared: 4 classes
    data["y_test"][0] = 50_000_000
    with pytest.raises(TaskError, match=r"y_test holds label 50000000 \(50,000,000\): more than 100,000 classes"):
        from_arrays("t", {**data, "output_size": 50_000_001})
    data = _arrays()
    data["y_train"][0] = MAX_CLASSES
    with pytest.raises(TaskError, match=f"y_train holds label {MAX_CLASSES}"):
        from_arrays("t", data)


def test_token_ids_must_fit_the_vocabulary():
    from momsearch.tasks.arrays import MAX_VOCAB, from_arrays

    tokens = np.arange(24 * 5).reshape(24, 5) % 7
    data = {**_arrays(), "x_train": tokens, "x_val": tokens.copy(), "x_test": tokens.copy()}
    assert from_arrays("t", data).input_size == 7
    data["x_val"][0, 0] = MAX_VOCAB
    with pytest.raises(TaskError, match=f"x_val holds token id {MAX_VOCAB} "):
        from_arrays("t", data)
    data["x_val"][0, 0] = 9
    with pytest.raises(TaskError, match=r"input_size=8: must be an int >= 10"):
        from_arrays("t", {**data, "input_size": 8})


def test_a_model_with_too_many_parameters_is_refused_before_it_is_allocated():
    from momsearch.tasks.arrays import check_model_size

    io = {"input_size": 2, "output_size": 3, "input": "sequence", "target": "last"}
    assert check_model_size("t", {"block": "rnn", "block.rnn.hidden_size": 8}, io) is None  # far below: not built
    assert check_model_size("t", {"block": "rnn", "block.rnn.hidden_size": 8}, io, limit=10_000) == 411
    with pytest.raises(TaskError, match=r"hidden_size=8 .* 411 parameters, more than 300"):
        check_model_size("t", {"block": "rnn", "block.rnn.hidden_size": 8}, io, limit=300)
    start = time.perf_counter()
    with pytest.raises(TaskError, match=r"block.rnn.hidden_size=200000 .* parameters, more than"):
        check_model_size("t", {"block": "rnn", "block.rnn.hidden_size": 200_000}, io)
    assert time.perf_counter() - start < 5  # counted on the meta device: nothing allocated


def test_counting_on_the_meta_device_leaves_later_real_models_alone():
    # in a fresh interpreter: the count is the first thing that imports the blocks (and torchdiffeq)
    probe = ("from momsearch.tasks.arrays import check_model_size; from momsearch.builder import build\n"
             "io = {'input_size': 2, 'output_size': 2, 'input': 'static', 'target': 'static'}\n"
             "check_model_size('t', {'block': 'ode', 'block.ode.hidden_size': 100000}, io)\n"
             "model = build({'block': 'ode'}, 2, 2, input='static', target='static')\n"
             "print(sum(p.numel() for p in model.parameters()), next(model.parameters()).device)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "cpu"


@pytest.mark.parametrize("width", ["100000", "[8, 100000]", "{low: 8, high: 100000}"])
def test_a_space_whose_largest_model_is_absurd_is_refused_before_any_trial(tmp_path, capsys, width):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\ntask: seq_digits\nobjectives: [accuracy]\nspace: {{block: {{rnn: {{hidden_size: "
                    f"{width}}}, attention: {{}}}}}}\nstudy: {{n_trials: 1}}\n")
    start = time.perf_counter()
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert time.perf_counter() - start < 20  # counted on the meta device, nothing allocated
    _one_line(capsys, code, "largest rnn configuration): block.rnn.hidden_size=100000")
    assert not (tmp_path / "out" / "study.db").exists()


def _npz_study(tmp_path, data_path):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\ntask: {{npz: {data_path.name}}}\nobjectives: [accuracy]\n"
                    "space: {block: {rnn: {hidden_size: 4}}}\ntrain: {epochs: 1, max_batches: 1}\n"
                    "study: {n_trials: 2}\n")
    return path


def _bad_npz(tmp_path, kind):
    path = tmp_path / "data.npz"
    if kind == "label":
        data = _arrays()
        data["y_test"][0] = 50_000_000
        np.savez(path, **data)
        return path, "y_test holds label 50000000"
    np.savez(path, **_arrays())
    good = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
        return path, "truncated or corrupt"
    if kind == "corrupt":
        path.write_bytes(good[:120] + b"\x00" * 64 + good[184:])
        return path, "truncated or corrupt"
    if kind == "text":
        path.write_text("x_train,y_train\n1,2\n")
        return path, "it is a text file"
    data = _arrays()
    data["x_train"] = np.array([{"a": 1}] * 24, dtype=object)
    np.savez(path, **data)
    return path, "holds Python objects"


@pytest.mark.parametrize("kind", ["label", "truncated", "corrupt", "text", "object"])
def test_a_bad_npz_is_one_line_naming_the_file_before_any_trial(tmp_path, capsys, kind):
    data_path, match = _bad_npz(tmp_path, kind)
    code = main(["run", str(_npz_study(tmp_path, data_path)), "--out", str(tmp_path / "out"), "--no-progress"])
    err = _one_line(capsys, code, match)
    assert "data.npz" in err and "allow_pickle" not in err
    assert not (tmp_path / "out" / "study.db").exists()  # refused before the study was created


# --- secrets ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:PASS@host/db", "postgresql://u:***@host/db"),
    ("postgresql+psycopg://u:PASS@host:5432/db", "postgresql+psycopg://u:***@host:5432/db"),
    ("mysql://u:PASS@host/db", "mysql://u:***@host/db"),
    ("nosuchdriver://u:PASS@host/db", "nosuchdriver://u:***@host/db"),
    ("postgresql://u@host/db?password=PASS&sslmode=require", "postgresql://u@host/db?password=***&sslmode=require"),
    ("postgresql://u:PA%40SS@host/db", "postgresql://u:***@host/db"),
    ("postgresql://u:PA@SS@host/db", "postgresql://u:***@host/db"),
    ("not even a url://u:PASS@", None),
    ("sqlite:////tmp/study.db", "sqlite:////tmp/study.db"),
])
def test_redact_hides_every_password(url, shown):
    assert "PASS" not in redact(url) and "SS@" not in redact(url)
    if shown is not None:
        assert redact(url) == shown
    assert "PASS" not in scrub(f"could not connect to {url}: rejected", url)
    if "PASS" in url:
        assert "PASS" not in scrub("driver said: password 'PASS' rejected", url)


CLOSED_PORT = 9  # discard: nothing listens on 127.0.0.1:9 here
ERROR_URLS = {
    "missing driver": "mysql://u:PASS@127.0.0.1:3306/db",
    "unknown dialect": "nosuchdb://u:PASS@127.0.0.1/db",
    "server unreachable": f"postgresql://u:PASS@127.0.0.1:{CLOSED_PORT}/db?connect_timeout=2",
    "password parameter": f"postgresql://u@127.0.0.1:{CLOSED_PORT}/db?password=PASS&connect_timeout=2",
    "unparsable": "postgresql://u:PASS@127.0.0.1:notaport/db",
}


def _commands(tmp_path, url, via):
    study = tmp_path / "s.yaml"
    study.write_text(STUDY)
    flag = ["--storage", url] if via == "flag" else []
    return {"run": ["run", str(study), "--out", str(tmp_path / "out"), "--no-progress", *flag],
            "report": ["report", "s", *flag], "export": ["export", "s", "--out", str(tmp_path / "e"), *flag]}


@pytest.mark.slow
@pytest.mark.parametrize("via", ["flag", "env"])
@pytest.mark.parametrize("path", sorted(ERROR_URLS))
@pytest.mark.parametrize("command", ["run", "report", "export"])
def test_no_command_prints_a_storage_password(tmp_path, command, path, via):
    import os

    url = ERROR_URLS[path]
    env = {**os.environ, "PYTHONPATH": str(ROOT)} | ({"MOMSEARCH_STORAGE": url} if via == "env" else {})
    done = subprocess.run([sys.executable, "-m", "momsearch", *_commands(tmp_path, url, via)[command]],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    assert "PASS" not in done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert "storage" in done.stderr and "***" in done.stderr, done.stderr


@pytest.mark.slow
def test_unknown_study_on_a_live_server_hides_the_password(postgres_url, tmp_path, capsys, monkeypatch):
    url = postgres_url.replace("momsearch@", "momsearch:PASS@", 1)  # trust authentication ignores it
    for command in (["report", "nosuch", "--storage", url], ["export", "nosuch", "--out", str(tmp_path / "e"),
                                                             "--storage", url]):
        err = _one_line(capsys, main(command), "unknown study 'nosuch'")
        assert "PASS" not in err and "momsearch:***@" in err
    monkeypatch.setenv("MOMSEARCH_STORAGE", url.replace(":PASS@", "@") + "?password=PASS")
    err = _one_line(capsys, main(["report", "nosuch"]), "unknown study 'nosuch'")
    assert "PASS" not in err and "password=***" in err


SECRET = "Zq7pW3xK9sEcReT"  # a password no library file happens to contain (plotly.min.js holds "PASS")


@pytest.mark.slow
def test_a_study_on_a_password_url_leaves_no_password_in_any_file(postgres_url, tmp_path, monkeypatch, capsys):
    import json

    import optuna
    from tiny_study import TINY_SPACE

    url = postgres_url.replace("momsearch@", f"momsearch:{SECRET}@", 1)
    monkeypatch.setenv("MOMSEARCH_STORAGE", url)  # not on the command line
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text("name: secretive\ntask: seq_digits\nobjectives: {accuracy: maximize}\n"
                                     + TINY_SPACE + "study: {n_trials: 2}\n")
    assert main(["run", "t.yaml", "--no-progress"]) == 0
    assert main(["report", "t.yaml"]) == 0
    assert main(["export", "t.yaml", "--out", "best"]) == 0
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    study = optuna.load_study(study_name="secretive", storage=url)
    stored = json.dumps([study.user_attrs] + [[t.user_attrs, t.system_attrs] for t in study.trials])
    assert SECRET not in stored


# --- every CLI error path is one line ------------------------------------------------------------------------


@pytest.mark.parametrize("error, match", [
    (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
    (MemoryError(), "out of memory"),
    (IsADirectoryError(21, "Is a directory", "/some/path"), "/some/path: Is a directory"),
    (PermissionError(13, "Permission denied", "/root/x"), "/root/x: Permission denied"),
    (ValueError("line one\nline two"), "unexpected ValueError: line one"),
])
def test_every_error_reaching_the_cli_is_one_line(monkeypatch, capsys, error, match):
    from momsearch.commands import validate

    def fail(args):
        raise error

    monkeypatch.setattr(validate, "main", fail)
    _one_line(capsys, main(["validate", "x.yaml"]), match)


def test_an_error_caused_by_an_interrupt_is_reported_as_the_interrupt(monkeypatch, capsys):
    from momsearch.commands import validate

    def fail(args):
        try:
            raise KeyboardInterrupt("SIGTERM")
        except KeyboardInterrupt:
            raise RuntimeError("session rolled back during a flush") from None

    monkeypatch.setattr(validate, "main", fail)
    assert main(["validate", "x.yaml"]) == 130
    assert capsys.readouterr().err == "momsearch validate: interrupted\n"


def test_an_unusable_output_path_is_one_line(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    (tmp_path / "file").write_text("")
    _one_line(capsys, main(["run", str(path), "--out", str(tmp_path / "file" / "sub"), "--no-progress"]))
    _one_line(capsys, main(["report", str(path), "--out", str(tmp_path / "file" / "sub")]))
    capsys.readouterr()
    assert main(["run", "--bogus"]) == 2
    assert capsys.readouterr().err.count("\n") == 1  # argparse errors too: one line, no usage block


# --- the isolated check of an export catches a module that imports momsearch ---------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("line", ["import momsearch", "from momsearch.blocks import rnn as _unused"])
def test_an_exported_cell_that_imports_momsearch_fails_the_isolated_check(tmp_path, line):
    import torch

    from momsearch.builder import build
    from momsearch.errors import ExportError
    from momsearch.standalone import verify, write_export

    config = {"block": "rnn", "block.rnn.hidden_size": 4}
    io = {"input_size": 2, "output_size": 3, "input": "sequence", "target": "last", "times": False}
    model = build(config, 2, 3, input="sequence", target="last")
    directory = write_export(tmp_path / "cell", config, io, model.state_dict(), {"study": "s", "trial": 0})
    verify(directory, model, io)  # the honest export passes
    cell = directory / "cell.py"
    text = cell.read_text()
    cell.write_text(text.replace("\nimport torch\n", f"\n{line}\nimport torch\n", 1))
    assert line in cell.read_text()
    with pytest.raises(ExportError, match="without momsearch failed: ModuleNotFoundError"):
        verify(directory, model, io)
    assert torch.load(directory / "weights.pt", weights_only=True).keys()
