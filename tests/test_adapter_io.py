"""Saved folders: self-describing, reloadable, loadable by PEFT; many adapters over one base model."""

from __future__ import annotations

import json

import peft
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from engine.adapter_io import load_adapter
from engine.adapter_model import AdapterModel
from engine.errors import ConfigError
from engine.inference import Predictor
from engine.methods.ia3 import model as ia3
from engine.methods.ia3.config import IA3Config, ia3_config
from engine.training import TrainConfig, train

TEXTS = ["i love it", "terrible, broke in a day", "an unseen sentence about nothing"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    """One adapter of each method, trained on the tiny model."""
    from tests.conftest import NEGATIVE, POSITIVE, write_csv

    folder = tmp_path_factory.mktemp("trained")
    rows = [{"text": t, "label": "pos"} for t in POSITIVE * 3] + [{"text": t, "label": "neg"} for t in NEGATIVE * 3]
    data = write_csv(folder / "data.csv", rows)
    out = {}
    for method in ("pfeiffer", "houlsby", "ia3"):
        out[method] = folder / method
        train(TrainConfig(data=str(data), method=method, output=str(out[method]), base_model=str(tiny_bert),
                          epochs=1, learning_rate=5e-2, batch_size=8))
    return out


def test_bottleneck_folder_layout(trained) -> None:
    folder = trained["houlsby"]
    assert {p.name for p in folder.iterdir()} == {"adapter_config.json", "pytorch_adapter.bin", "head_config.json",
                                                  "pytorch_model_head.bin", "adapterlab.json", "README.md"}
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["config"]["mh_adapter"] is True and config["version"] == "adapters.1.3.0"
    assert config["model_class"] == "BertAdapterModel" and config["name"] == "houlsby"
    keys = torch.load(folder / "pytorch_adapter.bin", weights_only=True)
    assert "bert.encoder.layer.0.attention.output.adapters.houlsby.adapter_down.0.weight" in keys
    assert "bert.encoder.layer.1.output.adapters.houlsby.adapter_up.bias" in keys
    head = json.loads((folder / "head_config.json").read_text())["config"]
    assert head["label2id"] == {"neg": 0, "pos": 1} and head["layers"] == 2
    assert set(torch.load(folder / "pytorch_model_head.bin", weights_only=True)) == {
        f"heads.houlsby.{i}.{w}" for i in (1, 4) for w in ("weight", "bias")}


def test_adapterlab_json_describes_the_run(trained) -> None:
    meta = json.loads((trained["ia3"] / "adapterlab.json").read_text())
    for key in ("method", "base_model", "labels", "text_column", "text_pair_column", "max_length", "training",
                "metrics", "data_fingerprint", "started_at", "finished_at", "library_versions"):
        assert key in meta, key
    assert meta["labels"] == ["neg", "pos"] and meta["method"] == "ia3"


def test_reload_gives_the_same_probabilities_and_shares_the_base(trained, tiny_bert) -> None:
    predictor = Predictor()
    first = {m: predictor.probabilities(trained[m], TEXTS) for m in trained}
    assert len(predictor.models) == 1  # one base model for all three adapters
    backbone = next(iter(predictor.models.values())).backbone
    again = {m: predictor.probabilities(trained[m], TEXTS) for m in reversed(list(trained))}
    assert next(iter(predictor.models.values())).backbone is backbone
    for m in trained:
        assert torch.allclose(first[m], again[m], atol=1e-6)
        fresh = Predictor().probabilities(trained[m], TEXTS)  # a new process-like load from disk
        assert torch.allclose(first[m], fresh, atol=1e-6)
    assert not torch.allclose(first["pfeiffer"], first["houlsby"])


def test_ia3_folder_loads_in_peft(trained, tiny_bert) -> None:
    folder = trained["ia3"]
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in folder.iterdir()}
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "IA3" and config["task_type"] == "SEQ_CLS"
    assert config["modules_to_save"] == ["classifier"]
    assert "base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l" in load_file(
        folder / "adapter_model.safetensors")
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    peft_model = PeftModel.from_pretrained(base, folder).eval()
    tokenizer = Predictor().load(folder)[0].tokenizer
    with torch.no_grad():
        peft_probs = peft_model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.softmax(-1)
    ours = Predictor().probabilities(folder, TEXTS, calibrated=False)  # as PEFT computes them
    assert (peft_probs - ours).abs().max() <= 1e-5


def test_peft_made_ia3_weights_load_into_our_model(tiny_bert, tmp_path) -> None:
    """PEFT's own IA3 (same config, random vectors), saved by PEFT, imported by us: the same logits."""
    ours = AdapterModel(str(tiny_bert))
    config = ia3_config(ours.config.model_type, str(tiny_bert))
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    peft_config = peft.IA3Config(task_type="SEQ_CLS", target_modules=config.target_modules,
                                 feedforward_modules=config.feedforward_modules,
                                 modules_to_save=config.modules_to_save)
    peft_model = peft.get_peft_model(base, peft_config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "ia3_l" in name or "classifier" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3 + (1.0 if "ia3_l" in name else 0.0))
    peft_model.save_pretrained(tmp_path)
    saved = IA3Config.from_peft_json(tmp_path)
    assert set(saved.target_modules) == set(config.target_modules)  # PEFT writes them from a set: any order
    assert set(saved.feedforward_modules) == set(config.feedforward_modules)

    assert load_adapter(ours, tmp_path, "peft_made") == "peft_made"  # a PEFT folder: no adapterlab.json
    assert ours.adapters["peft_made"].labels == ["LABEL_0", "LABEL_1"]  # PEFT keeps no label names
    batch = ours.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = peft_model(**batch).logits
        got = ours.eval()(batch["input_ids"], batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    assert (got - expected).abs().max() <= 1e-5
    with torch.no_grad():  # the match is not trivial: with the vectors at their initial 1 the logits differ
        ia3.ia3_parameters(ours.backbone, "peft_made")[0].fill_(1.0)
        plain = ours(batch["input_ids"], batch["attention_mask"], token_type_ids=batch["token_type_ids"])
    assert (plain - expected).abs().max() > 1e-3


def test_predict_one_text_and_a_csv(trained, tmp_path) -> None:
    predictor = Predictor()
    result = predictor.predict(trained["pfeiffer"], "i love it")
    assert result["label"] in ("neg", "pos") and sum(result["probabilities"].values()) == pytest.approx(1.0)
    src = tmp_path / "in.csv"
    src.write_text('text,id\ni love it,1\n"=HYPERLINK(""http://x"")",2\n')
    assert predictor.predict_file(trained["pfeiffer"], src, tmp_path / "out.csv").rows == 2
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "text,id,prediction,prob_neg,prob_pos"
    assert lines[2].startswith("\"'=HYPERLINK")  # a spreadsheet shows it as text, never runs it


def test_not_an_adapter_folder(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no such adapter folder"):
        Predictor().load(tmp_path / "missing")
    with pytest.raises(ConfigError, match="not an adapter folder"):
        Predictor().load(tmp_path)
