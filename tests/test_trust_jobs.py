"""Issue 11 end to end on a tiny model: what a finished job keeps for review, the model card, test evaluations in
the job store, the temperature and threshold predict applies, and the command-line contracts."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch

from app import services, trust_views
from app.cli import main
from engine.adapter_io import read_metadata
from engine.calibration import decide
from engine.inference import Predictor
from engine.thresholds import set_temperature_use, set_threshold
from engine.training import TrainConfig, train
from tests.conftest import NEGATIVE, POSITIVE, write_csv
from tests.test_jobs import home  # noqa: F401  (the fixture, used by name)
from worker import api, evaluations, runner
from worker.access import MACHINE

ROWS = [{"review": t, "label": "pos"} for t in POSITIVE * 3] + [{"review": t, "label": "neg"} for t in NEGATIVE * 3]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_bert):
    """A Pfeiffer adapter (2 epochs) with a review folder, and a labelled test file with one '=' formula."""
    folder = tmp_path_factory.mktemp("trust")
    data = write_csv(folder / "data.csv", ROWS)
    test_rows = [{"review": "=1+1 great", "label": "pos"}, *ROWS[::5]]
    write_csv(folder / "test.csv", test_rows)
    train(TrainConfig(data=str(data), method="pfeiffer", text_column="review", output=str(folder / "adapter"),
                      base_model=str(tiny_bert), epochs=2, batch_size=8, learning_rate=1e-2),
          review_dir=str(folder / "review"))
    return folder


def test_training_saves_calibration_review_and_a_model_card(adapter):
    meta = read_metadata(adapter / "adapter")
    c = meta["calibration"]
    assert meta["temperature"] == c["temperature"] > 0 and meta["apply_temperature"] is True
    assert c["nll"] <= c["nll_before"] + 1e-9 and c["rows"] == 4 and len(c["reliability"]) == 10
    validation = pd.read_parquet(adapter / "review" / "validation.parquet")
    assert len(validation) == 4 and {"row", "text", "label", "logit_0", "logit_1"} <= set(validation.columns)
    issues = pd.read_parquet(adapter / "review" / "label_issues.parquet")
    assert set(issues.columns) == {"split", "row", "text", "given_label", "suggested_label", "score"}
    assert meta["label_issues"] == {"validation": int((issues.split == "validation").sum()),
                                    "training": int((issues.split == "training").sum())}
    card = (adapter / "adapter" / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: adapter-transformers" in front and "base_model: " in front and "- pfeiffer" in front
    assert "value: " in front and "macro-F1" in front
    assert "model.load_adapter(" in card and f"Temperature **{c['temperature']:.3f}**" in card
    assert meta["data_fingerprint"] in card


def test_predict_uses_the_temperature_and_the_threshold(adapter, tmp_path):
    folder = tmp_path / "copy"
    import shutil

    shutil.copytree(adapter / "adapter", folder)
    p = Predictor()
    t = read_metadata(folder)["temperature"]
    logits = p.logits(folder, ["i love it"])
    calibrated = p.predict(folder, "i love it")["probabilities"]
    assert calibrated["pos"] == pytest.approx(float((logits / t).softmax(-1)[0, 1]), abs=1e-6)
    set_temperature_use(folder, False)
    raw = p.predict(folder, "i love it")["probabilities"]  # the same Predictor sees the change at once
    assert raw["pos"] == pytest.approx(float(logits.softmax(-1)[0, 1]), abs=1e-6)
    # a threshold just above this text's probability of 'pos' makes it 'neg', and back when removed
    chosen = {"label": "pos", "value": raw["pos"] + 1e-4, "rule": "hand", "precision": 1, "recall": 1, "f1": 1}
    from engine.adapter_io import update_metadata

    update_metadata(folder, threshold=chosen)
    assert p.predict(folder, "i love it")["label"] == "neg"
    assert "predict **pos** when its probability is at least" in (folder / "README.md").read_text()
    update_metadata(folder, threshold=None)
    assert p.predict(folder, "i love it")["label"] == ("pos" if raw["pos"] >= 0.5 else "neg")


def test_switching_the_temperature_keeps_the_threshold_s_operating_point(adapter, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(adapter / "adapter", folder)
    chosen = set_threshold(folder, adapter / "test.csv")
    assert chosen["label"] == "pos" and chosen["rule"] == "max_f1"
    p = Predictor()
    texts = [r["review"] for r in ROWS]
    before = decide(p.probabilities(folder, texts), ["neg", "pos"], read_metadata(folder)["threshold"])
    set_temperature_use(folder, False)
    moved = read_metadata(folder)["threshold"]
    after = decide(p.probabilities(folder, texts), ["neg", "pos"], moved)
    assert before == after


def test_evaluate_and_label_issues_commands_keep_their_contract(adapter, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    assert main(["evaluate", "--adapter", str(adapter / "adapter"), "--data", str(adapter / "test.csv"),
                 "--text-column", "review", "--output", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["metrics"]) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "loss"}
    c = result["calibration"]
    assert set(c) >= {"ece", "ece_before", "temperature"} and 0 <= c["ece"] <= 1
    assert c["temperature"] == read_metadata(adapter / "adapter")["temperature"] and result["rows"] == 11
    rows = pd.read_csv(out)
    assert rows.loc[0, "text"] == "'=1+1 great"  # formula-safe
    assert {"predicted", "confidence", "p(pos)", "p(neg)"} <= set(rows.columns)
    assert main(["label-issues", "--adapter", str(adapter / "adapter"), "--data", str(adapter / "test.csv"),
                 "--json"]) == 0
    issues = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["issues"]
    for issue in issues:
        assert set(issue) >= {"row", "given_label", "suggested_label", "score"}
    assert [i["score"] for i in issues] == sorted((i["score"] for i in issues), reverse=True)


def test_bad_input_is_one_line_and_exit_2(adapter, tmp_path, capsys):
    assert main(["threshold", "--adapter", str(adapter / "adapter")]) == 2
    assert "threshold needs --data" in capsys.readouterr().err
    assert main(["evaluate", "--adapter", str(adapter / "adapter"), "--data", str(adapter / "test.csv"),
                 "--text-column", "body"]) == 2
    assert "no column 'body'" in capsys.readouterr().err
    wrong = write_csv(tmp_path / "wrong.csv", [{"review": "x", "label": "maybe"}, {"review": "y", "label": "pos"}])
    assert main(["evaluate", "--adapter", str(adapter / "adapter"), "--data", str(wrong),
                 "--text-column", "review"]) == 2
    assert "labels 'maybe' are not among the adapter's labels" in capsys.readouterr().err


def test_a_job_keeps_its_review_and_its_test_evaluations(home, tiny_bert, tmp_path):  # noqa: F811
    data = write_csv(tmp_path / "reviews.csv", ROWS)
    job_id = api.submit({"data": str(data), "text_column": "review", "method": "ia3", "base_model": str(tiny_bert),
                         "epochs": 1, "batch_size": 8, "balance_classes": True})
    assert runner.run_job(job_id) == "succeeded"
    assert [value for _, value in trust_views.sources(job_id, MACHINE)] == ["validation"]
    adapter_dir = api.get_job(job_id)["adapter_dir"]
    assert read_metadata(adapter_dir)["training"]["balance_classes"] is True
    test = write_csv(tmp_path / "test.csv", [{"body": r["review"], "y": r["label"]} for r in ROWS[::4]])
    done = services.evaluate_file(job_id, test, "test.csv", "body", None, "y", MACHINE)
    assert re.fullmatch(r"[0-9a-f]{12}", done["id"]) and done["rows"] == 12
    listed = evaluations.list_for(job_id)
    assert [(e["file_name"], e["rows"], e["columns"]) for e in listed] == [
        ("test.csv", 12, {"text": "body", "pair": None, "label": "y"})]
    assert read_metadata(adapter_dir)["evaluations"][0]["file_name"] == "test.csv"
    assert "test file test.csv" in (api.settings.adapters_dir() / job_id / "README.md").read_text()
    frame, labels = trust_views.rows(job_id, done["id"], adapter_dir, MACHINE)
    assert len(frame) == 12 and labels == ["neg", "pos"]
    matrix = trust_views.confusion_frame(frame, labels)
    assert int(matrix[labels].to_numpy().sum()) == 12
    assert torch.tensor(matrix[labels].to_numpy()).tolist() == done["metrics"]["confusion_matrix"]
    cell = trust_views.filtered(frame, ("pos", "pos"), "", False, trust_views.SORTS[0])
    assert (cell["label"] == "pos").all() and (cell["predicted"] == "pos").all()
    assert cell["confidence"].is_monotonic_increasing
    assert trust_views.page(frame, 9)[2] == 1  # one page of 12 rows: asked for page 9, shown page 1
    assert evaluations.rows_path(job_id, "../../etc") is None
    api.delete(job_id)
    assert not evaluations.review_dir(job_id).exists() and evaluations.list_for(job_id) == []
