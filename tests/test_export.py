"""ONNX export: every registered method's adapter, base and head as one graph, checked against torch at export,
run by onnxruntime through the export's own predict.py with the tokenizer alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from engine import methods
from engine.adapter_io import save_adapter, update_metadata
from engine.adapter_model import AdapterModel
from engine.errors import ConfigError
from engine.export import export_onnx
from engine.inference import Predictor
from engine.training import TrainConfig, train
from tests.conftest import ROOT, make_tiny_model, write_csv

TEXTS = ["i love it", "terrible, broke in a day and nobody answered my emails for a week", "ok"]
OPTIONS = {"compacter": {"reduction_factor": 2}, "prefix": {"prefix_length": 5}, "prompt": {"num_virtual_tokens": 4}}


def _predict_py(folder, *args: str) -> list[dict]:
    """The export's predict.py as a user runs it: in its folder, a fresh interpreter, JSON lines out."""
    result = subprocess.run([sys.executable, "predict.py", *args], cwd=folder, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict:
    """One adapter per registered method on a tiny BERT, weights moved off their (often identity) start."""
    base = make_tiny_model(tmp_path_factory.mktemp("export-bert"), initializer_range=0.2)
    torch.manual_seed(0)
    model = AdapterModel(str(base))
    folder = tmp_path_factory.mktemp("export-adapters")
    out = {}
    for name in methods.names():
        options = OPTIONS.get(name)
        if name == "fusion":  # over the Houlsby and Compacter adapters saved above
            options = {"fuse": [str(out["houlsby"]), str(out["compacter"])]}
        model.add_adapter(name, name, ["neg", "neu", "pos"], options)
        with torch.no_grad():
            for p in model.trainable_parameters(name):
                p.add_(torch.randn_like(p) * 0.2)
        out[name] = save_adapter(model, name, folder / name, {"max_length": 64})
    return out


@pytest.mark.parametrize("name", methods.names())
def test_every_method_exports_and_predict_py_answers_as_the_predictor(adapters, name, tmp_path) -> None:
    result = export_onnx(adapters[name], tmp_path / "export")
    assert result.max_abs_diff <= 1e-4 and result.rows_checked > 0 and "demo texts" in result.rows_from
    files = {p.name for p in (tmp_path / "export").iterdir()}
    assert {"model.onnx", "tokenizer.json", "adapter.json", "predict.py", "README.md"} <= files
    predictor = Predictor()
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS))
    for text, got in zip(TEXTS, _predict_py(tmp_path / "export", "--file", str(tmp_path / "texts.txt")), strict=True):
        want = predictor.predict(adapters[name], text)
        assert got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-4)
    # not trivial: the adapters disagree with each other
    assert abs(predictor.predict(adapters[name], TEXTS[0])["probabilities"]["pos"] - 1 / 3) > 1e-3


def test_a_batch_through_the_graph_takes_any_batch_and_length(adapters, tmp_path) -> None:
    """Batch and sequence axes are dynamic: 1 row without padding (a text as arguments), 40 rows of mixed
    lengths (--file)."""
    export_onnx(adapters["lora"], tmp_path / "export")
    one = _predict_py(tmp_path / "export", "i", "love", "it")[0]  # words as arguments make one text
    assert one["probabilities"] == pytest.approx(Predictor().predict(adapters["lora"], "i love it")["probabilities"],
                                                 abs=1e-4)
    texts = [" ".join(["word"] * (1 + i % 17)) + f" {i}" for i in range(40)]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    got = _predict_py(tmp_path / "export", "--file", str(tmp_path / "texts.txt"))
    want = Predictor().probabilities(adapters["lora"], texts)
    assert len(got) == 40
    worst = max(abs(g["probabilities"][k] - float(want[i, j])) for i, g in enumerate(got)
                for j, k in enumerate(["neg", "neu", "pos"]))
    assert worst <= 1e-4


def test_a_pair_adapter_on_distilbert_with_its_threshold(tmp_path) -> None:
    """No token types (DistilBERT), two texts per row, and the decision threshold the adapter carries."""
    base = make_tiny_model(tmp_path / "distilbert", "distilbert", initializer_range=0.2)
    rows = [{"q1": f"how do i reset my password {i}", "q2": f"password reset {i}" if i % 2 else "where is the shop",
             "label": "duplicate" if i % 2 else "different"} for i in range(40)]
    data = write_csv(tmp_path / "pairs.csv", rows)
    result = train(TrainConfig(data=str(data), text_column="q1", text_pair_column="q2", method="ia3",
                               base_model=str(base), output=str(tmp_path / "adapter"), epochs=1, batch_size=8))
    update_metadata(result.adapter_dir, threshold={"label": "duplicate", "value": 0.2})
    cli = subprocess.run([sys.executable, "-m", "app.cli", "export", "--adapter", str(result.adapter_dir),
                          "--format", "onnx", "--output", str(tmp_path / "export"), "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    assert report["max_abs_diff"] <= 1e-4 and report["onnx_path"].endswith("model.onnx")
    assert "validation rows of the training data" in report["rows_from"]
    config = json.loads((tmp_path / "export" / "adapter.json").read_text())
    assert config["inputs"] == ["input_ids", "attention_mask"] and config["threshold"]["value"] == 0.2
    want = Predictor().predict(result.adapter_dir, "how do i reset my password", "where is the shop")
    got = _predict_py(tmp_path / "export", "how do i reset my password", "where is the shop")[0]
    assert got["label"] == want["label"]
    assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-4)
    single = subprocess.run([sys.executable, "predict.py", "only one text"], cwd=tmp_path / "export",
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 2 and "trained on text pairs" in single.stderr


def test_refusals_write_nothing(adapters, tmp_path, monkeypatch) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        export_onnx(adapters["pfeiffer"], taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    cli = subprocess.run([sys.executable, "-m", "app.cli", "export", "--adapter", str(tmp_path / "nope"),
                          "--output", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "no such adapter folder" in cli.stderr and "Traceback" not in cli.stderr
    monkeypatch.setattr("engine.export.TOLERANCE", -1.0)  # a graph that disagrees: refused, nothing left behind
    with pytest.raises(ConfigError, match="disagrees with the torch model"):
        export_onnx(adapters["pfeiffer"], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_the_predictor_serves_adapters_from_their_exports_as_from_torch(adapters, tmp_path) -> None:
    """`serve_from_onnx`: one adapter's rows run in onnxruntime with torch's answers (1e-5); the least recently
    used session beyond the limit is closed; mixed rows and an unloaded adapter go back to torch."""
    predictor = Predictor(onnx_sessions=2)
    pfeiffer, lora, prompt = folders = [adapters[name] for name in ("pfeiffer", "lora", "prompt")]
    texts = TEXTS * 3
    expected = {folder: predictor.predict_batch(texts, [folder] * len(texts)) for folder in folders}
    exports = {folder: export_onnx(folder, tmp_path / folder.name).output for folder in folders}

    def runtimes() -> list[str]:
        return [predictor.runtime(folder) for folder in folders]

    for folder in folders:
        predictor.serve_from_onnx(folder, exports[folder])
    assert runtimes() == ["pytorch", "onnxruntime", "onnxruntime"]
    predictor.serve_from_onnx(lora, exports[lora])  # used again: prompt is now the least recently used
    predictor.serve_from_onnx(pfeiffer, exports[pfeiffer])
    assert runtimes() == ["onnxruntime", "onnxruntime", "pytorch"]
    predictor.serve_from_onnx(prompt, exports[prompt])
    for folder in folders:
        served = predictor.predict_batch(texts, [folder] * len(texts))
        for got, want in zip(served, expected[folder], strict=True):
            assert got["label"] == want["label"]
            assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
    mixed = predictor.predict_batch(texts[:2], [lora, prompt])
    assert mixed[0]["probabilities"] == pytest.approx(expected[lora][0]["probabilities"], abs=1e-5)
    assert mixed[1]["probabilities"] == pytest.approx(expected[prompt][1]["probabilities"], abs=1e-5)
    predictor.unload(prompt)
    assert predictor.runtime(prompt) == "pytorch"


def test_only_a_base_model_that_fits_one_onnx_file_is_served_from_onnx(adapters, monkeypatch) -> None:
    predictor = Predictor()
    assert predictor.can_serve_from_onnx(adapters["pfeiffer"])
    monkeypatch.setattr("engine.inference.ONNX_MAX_BYTES", 1_000_000)  # below the tiny model's 4 MB of weights
    assert not predictor.can_serve_from_onnx(adapters["pfeiffer"])
