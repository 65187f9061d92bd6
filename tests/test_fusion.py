"""AdapterFusion through the engine, the command line and the job system: what it trains and keeps frozen, how it
is saved, the fused adapters named by folder or job id, and the refusals (in words, exit status 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.adapter_model import AdapterModel
from engine.errors import ConfigError
from engine.folder_files import load_weights
from engine.inference import Predictor
from engine.training import TrainConfig, train
from tests.conftest import ROOT
from worker import api, runner


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory) -> dict:
    """Two Pfeiffer adapters, a Houlsby one and a LoRA one on the tiny BERT."""
    from tests.conftest import NEGATIVE, POSITIVE, write_csv

    folder = tmp_path_factory.mktemp("fusion")
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    data = write_csv(folder / "d.csv", rows * 2)
    out = {"data": data}
    for name, method in (("first", "pfeiffer"), ("second", "pfeiffer"), ("houlsby", "houlsby"), ("lora", "lora")):
        out[name] = train(TrainConfig(data=str(data), method=method, output=str(folder / name),
                                      base_model=str(tiny_bert), epochs=1, batch_size=8,
                                      learning_rate=5e-2)).adapter_dir
    return out


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def test_the_cli_trains_a_fusion_that_keeps_the_fused_adapters_as_they_were(trained, tiny_bert, tmp_path):
    result = _cli("train", "--method", "fusion", "--fuse", str(trained["first"]), str(trained["second"]),
                  "--data", str(trained["data"]), "--base-model", str(tiny_bert), "--epochs", "1",
                  "--output", str(tmp_path / "fusion"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["method"] == "fusion" and report["adapter_params"] == 2 * (3 * 32 * 32 + 2 * 32)
    folder = tmp_path / "fusion"
    saved = json.loads((folder / "adapter_fusion_config.json").read_text())
    assert saved["adapter_names"] == ["first", "second"] and saved["name"] == "first,second"
    assert saved["config"]["value_initialized"] and saved["config"]["query"]
    weights = load_weights(folder, "pytorch_model_adapter_fusion.bin", "model_adapter_fusion.safetensors")
    assert len(weights) == 2 * 5 and all(".adapter_fusion_layer.first,second." in k for k in weights)
    head = load_weights(folder, "pytorch_model_head.bin", "model_head.safetensors")
    assert all(k.startswith("heads.first,second.") for k in head)
    for name in ("first", "second"):  # the fused adapters' own files, byte for byte the same weights
        copied = load_weights(folder / "fused" / name, "pytorch_adapter.bin", "adapter.safetensors")
        source = load_weights(Path(trained[name]), "pytorch_adapter.bin", "adapter.safetensors")
        assert sorted(copied) == sorted(source) and all(torch.equal(copied[k], source[k]) for k in source)
    # the fusion predicts on its own, in a mixed batch and beside its fused adapters loaded as themselves
    predictor = Predictor()
    alone = predictor.predict(folder, "i love it")
    mixed = predictor.predict_batch(["i love it", "i love it"], [folder, trained["first"]])
    assert mixed[0]["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-6)
    assert mixed[1]["probabilities"] == pytest.approx(predictor.predict(trained["first"], "i love it")["probabilities"],
                                                      abs=1e-6)


def test_only_the_fusion_layers_and_head_train(trained, tiny_bert):
    model = AdapterModel(str(tiny_bert))
    model.add_adapter("f", "fusion", ["neg", "pos"], {"fuse": [str(trained["first"]), str(trained["second"])]})
    trainable = {id(p) for p in model.train_adapter("f")}
    names = [n for n, p in model.named_parameters() if id(p) in trainable]
    assert names and all("fusions.f." in n or n.startswith("heads.f.") for n in names)
    assert any("adapters.f__first." in n for n, _ in model.named_parameters())  # loaded, frozen
    model.delete_adapter("f")  # its fused adapters go with it
    assert not model.adapters and not [n for n, _ in model.named_parameters() if "fusions" in n or "adapters." in n]


@pytest.mark.parametrize(("which", "says"), [
    (("first",), "needs at least two trained adapters"),
    (("first", "lora"), "is a LoRA adapter; Fusion combines bottleneck adapters"),
    (("first", "houlsby"), "sit in the same places"),
    (("first", "nope"), "No finished adapter 'nope' to fuse: give a job id from the Jobs tab or an adapter folder"),
])
def test_refusals_say_what_to_fix(trained, tiny_bert, tmp_path, which, says):
    home = tmp_path / "home"
    env = {**__import__("os").environ, "ADAPTERLAB_HOME": str(home)}
    result = _cli("train", "--method", "fusion", "--fuse", *[str(trained.get(w, w)) for w in which],
                  "--data", str(trained["data"]), "--base-model", str(tiny_bert), "--output", str(tmp_path / "f"),
                  env=env)
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "f").exists()


def test_a_fusion_job_names_its_adapters_by_job_id_and_the_page_cannot_name_folders(trained, tiny_bert, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("ADAPTERLAB_HOME", str(tmp_path / "home"))
    for name in ("ADAPTERLAB_DATABASE_URL", "ADAPTERLAB_REDIS_URL", "ADAPTERLAB_QUEUE_NAME"):
        monkeypatch.delenv(name, raising=False)
    base = {"data": str(trained["data"]), "base_model": str(tiny_bert), "epochs": 1, "batch_size": 8}
    ids = [api.submit({**base, "method": "pfeiffer"}) for _ in range(2)]
    for job_id in ids:
        runner.run_job(job_id)
    fusion_id = api.submit({**base, "method": "fusion", "method_options": {"fuse": ids}}, allow_folders=False)
    job = api.get_job(fusion_id)
    folders = [api.get_job(i)["adapter_dir"] for i in ids]
    assert job["spec"]["method_options"]["fuse"] == folders  # stored as folders: retry and clone do not look up
    runner.run_job(fusion_id)
    assert api.get_job(fusion_id)["state"] == "succeeded"
    with pytest.raises(ConfigError, match="No finished adapter .* give a job id from the Jobs tab."):
        api.submit({**base, "method": "fusion", "method_options": {"fuse": folders}}, allow_folders=False)
