"""Batch prediction of a table: rows without text get no prediction, and the text columns can be named otherwise."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from engine.errors import DataError
from engine.inference import Predictor
from engine.training import TrainConfig, train
from tests.conftest import NEGATIVE, POSITIVE, ROOT, write_csv


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_bert):
    """An IA3 adapter trained (one epoch) on a 'review' column."""
    folder = tmp_path_factory.mktemp("inference")
    rows = [{"review": t, "label": "pos"} for t in POSITIVE * 2] + [{"review": t, "label": "neg"} for t in NEGATIVE * 2]
    train(TrainConfig(data=str(write_csv(folder / "data.csv", rows)), method="ia3", text_column="review",
                      output=str(folder / "ia3"), base_model=str(tiny_bert), epochs=1, batch_size=8))
    return folder / "ia3"


def read(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_empty_texts_keep_their_row_without_a_prediction(adapter, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('review,id\ni love it,1\n,2\n"   ",3\nawful,4\n')
    result = Predictor().predict_file(adapter, src, tmp_path / "out.csv")
    assert (result.rows, result.skipped, result.predicted) == (4, 2, 2)
    rows = read(tmp_path / "out.csv")
    assert [r["id"] for r in rows] == ["1", "2", "3", "4"]
    assert [bool(r["prediction"]) for r in rows] == [True, False, False, True]
    assert rows[1]["prob_pos"] == "" and float(rows[0]["prob_pos"]) + float(rows[0]["prob_neg"]) == pytest.approx(1)


def test_other_column_names_and_their_errors(adapter, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("body,notes\ni love it,\nawful,\n")
    with pytest.raises(DataError, match=r"no column 'review' \(the adapter was trained on it\); the columns are "
                                        r"'body', 'notes'\. Choose the column that holds the text\."):
        Predictor().predict_file(adapter, src, tmp_path / "out.csv")
    assert Predictor().predict_file(adapter, src, tmp_path / "out.csv", text_column="body").predicted == 2
    with pytest.raises(DataError, match="every row is empty in 'notes': nothing to predict"):
        Predictor().predict_file(adapter, src, tmp_path / "out.csv", text_column="notes")


def test_cli_predict_counts_the_skipped_rows(adapter, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("body,id\ni love it,1\n,2\n")
    command = [sys.executable, "-m", "app.cli", "predict", "--adapter", str(adapter), "--input", str(src),
               "--output", str(tmp_path / "out.csv"), "--text-column", "body"]
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300, check=True)
    assert json.loads(done.stdout) == {"rows": 2, "predicted": 1, "skipped": 1, "output": str(tmp_path / "out.csv")}
    assert [r["prediction"] != "" for r in read(tmp_path / "out.csv")] == [True, False]
