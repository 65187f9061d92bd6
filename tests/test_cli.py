"""The `adapterlab` command line, run as a user would: JSON for scripts, one-line errors, exit codes.

Training runs the real console entry point in a new process; the quick commands run `app.cli.main` in this
process (`here`), which is what the entry point calls, without a second interpreter start-up each time."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from app.cli import main
from tests.conftest import ROOT


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def here(capsys: pytest.CaptureFixture, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`adapterlab ARGS` through `app.cli.main` in this process (run from the project's root, as `run`)."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    if check:
        assert code == 0, err
    return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_bert):
    from tests.conftest import NEGATIVE, POSITIVE, write_csv

    folder = tmp_path_factory.mktemp("cli")
    rows = [{"review": t, "stars": "pos"} for t in POSITIVE * 3] + [{"review": t, "stars": "neg"} for t in NEGATIVE * 3]
    data = write_csv(folder / "reviews.csv", rows)
    result = run("train", "--data", str(data), "--text-column", "review", "--label-column", "stars", "--method",
                 "houlsby", "--reduction-factor", "8", "--base-model", str(tiny_bert), "--epochs", "2",
                 "--batch-size", "8", "--learning-rate", "0.05", "--output", str(folder / "adapter"), "--json")
    return folder, json.loads(result.stdout.strip().splitlines()[-1]), result


def test_train_json(adapter) -> None:
    folder, out, result = adapter
    assert out["adapter_dir"] == str(folder / "adapter") and out["method"] == "houlsby"
    assert out["adapter_params"] == 2 * 2 * (2 * 32 * 4 + 4 + 32)  # 2 layers x 2 sites, d = 32 / 8
    assert out["trainable_params"] > out["adapter_params"]
    assert set(out["metrics"]) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
    assert out["train_seconds"] > 0 and out["train_samples_per_second"] > 0
    assert "loss=" not in result.stderr  # quiet with --json


def test_progress_bar_without_json(tiny_bert, sentiment_csv, tmp_path) -> None:
    result = run("train", "--data", str(sentiment_csv), "--method", "ia3", "--base-model", str(tiny_bert),
                 "--epochs", "1", "--output", str(tmp_path / "a"))
    assert "loss=" in result.stderr and "epoch 1: accuracy" in result.stderr
    assert "saved to" in result.stdout and "trainable with the head" in result.stdout


def test_predict_text_and_csv(adapter, tmp_path, capsys) -> None:
    folder, _, _ = adapter
    adapter_dir = str(folder / "adapter")
    out = json.loads(here(capsys, "predict", "--adapter", adapter_dir, "--text", "i love it", "--json").stdout)
    assert out["label"] in ("pos", "neg") and set(out["probabilities"]) == {"neg", "pos"}
    src = tmp_path / "in.csv"
    src.write_text("review,id\ni love it,1\n@SUM(A1),2\n")
    here(capsys, "predict", "--adapter", str(folder / "adapter"), "--input", str(src), "--output",
         str(tmp_path / "o.csv"))
    with open(tmp_path / "o.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["review", "id", "prediction", "prob_neg", "prob_pos"]
    assert rows[1]["review"] == "'@SUM(A1)"


def test_evaluate_json(adapter, capsys) -> None:
    folder, _, _ = adapter
    out = json.loads(here(capsys, "evaluate", "--adapter", str(folder / "adapter"), "--data",
                          str(folder / "reviews.csv"), "--json").stdout)
    assert out["rows"] == 48 and 0 <= out["metrics"]["accuracy"] <= 1 and len(out["metrics"]["confusion_matrix"]) == 2
    assert out["calibration"]["temperature"] > 0 and 0 <= out["calibration"]["ece"] <= 1


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--data", "missing.csv", "--method", "pfeiffer", "--output", "x"], "data error: missing.csv: no such"),
    (["predict", "--adapter", "nowhere", "--text", "hi"], "config error: nowhere: no such adapter folder"),
    (["train", "--data", "engine/demo_data/support_tickets.csv", "--method", "pfeiffer", "--output", "x",
      "--base-model", "./no-such-model"], "config error: Base model folder './no-such-model' does not exist"),
    (["train", "--data", "engine/demo_data/support_tickets.csv", "--method", "pfeiffer", "--output", "x",
      "--label-column", "category"], "no column 'category'; the columns are 'text', 'label'"),
])
def test_errors_are_one_line_with_exit_2(args, message, capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    result = here(capsys, *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_method_is_a_usage_error(capsys) -> None:
    result = here(capsys, "train", "--data", "x.csv", "--method", "adamix", "--output", "x", check=False)
    assert result.returncode == 2 and "invalid choice: 'adamix'" in result.stderr


def test_the_job_and_account_commands_load_neither_torch_nor_transformers(tmp_path):
    """`jobs`, `users list` and `tokens list` read the job store only: without the engine's libraries they answer in
    half a second instead of two and a half (and `search --help` still lists the search's own flags)."""
    code = ("import sys; from app.cli import main; "
            "codes = [main(a) for a in (['jobs'], ['users', 'list'], ['tokens', 'list'])]; "
            "print(codes, sorted(m for m in ('torch', 'transformers', 'optuna') if m in sys.modules))")
    env = {**os.environ, "ADAPTERLAB_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[0, 0, 0] []"
    search = subprocess.run([sys.executable, "-m", "app.cli", "search", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert all(flag in search.stdout for flag in ("--budget-minutes", "--parallel", "--wait", "--data"))
