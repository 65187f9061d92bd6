"""Our Pfeiffer/Houlsby/parallel folders load in AdapterHub's `adapters` 1.3 with the same probabilities, and back.

AdapterHub pins transformers 4.57, so it runs in its own venv (scripts/make_reference_venv.sh); these tests
skip with that reason where the venv is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from engine.inference import Predictor
from engine.training import TrainConfig, train
from tests.conftest import NEGATIVE, POSITIVE, ROOT, make_tiny_model, write_csv

VENV_PYTHON = Path(os.environ.get("ADAPTERLAB_REFERENCE_VENV", ROOT / ".venvs" / "adapterhub")) / "bin" / "python"
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not VENV_PYTHON.exists(), reason="AdapterHub reference venv absent: run "
                       "scripts/make_reference_venv.sh"),
]
TEXTS = ["i love it", "terrible, broke in a day", "", "a sentence that neither side has seen before"]
PAIRS = ["how are you", "what is this", "fine", "another one"]


def _reference(script: str, *args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    subprocess.run([str(VENV_PYTHON), str(ROOT / "tests" / "interop" / script), *args], check=True, env=env,
                   capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("method", ["pfeiffer", "houlsby", "parallel", "prefix", "compacter"])
def test_adapterhub_loads_our_adapter(method, bundled_model, tmp_path) -> None:
    rows = [{"q": t, "q2": t[::-1], "y": "pos"} for t in POSITIVE] + [
        {"q": t, "q2": t[::-1], "y": "neg"} for t in NEGATIVE]
    data = write_csv(tmp_path / "d.csv", rows * 2)
    out = tmp_path / method
    train(TrainConfig(data=str(data), method=method, output=str(out), text_column="q", text_pair_column="q2",
                      label_column="y", epochs=1, learning_rate=5e-2, batch_size=8))
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS))
    (tmp_path / "pairs.json").write_text(json.dumps(PAIRS))
    _reference("adapterhub_predict.py", "--base-model", str(bundled_model), "--adapter", str(out),
               "--texts-json", str(tmp_path / "texts.json"), "--pairs-json", str(tmp_path / "pairs.json"),
               "--out", str(tmp_path / "ref.json"))
    ref = json.loads((tmp_path / "ref.json").read_text())
    ours = Predictor().probabilities(out, TEXTS, PAIRS, calibrated=False)
    assert ref["label2id"] == {"neg": 0, "pos": 1}
    assert (torch.tensor(ref["probabilities"]) - ours.double()).abs().max() <= 1e-4


@pytest.mark.parametrize("method", ["pfeiffer", "houlsby", "prefix"])
def test_adapterhub_loads_our_deberta_v2_adapter(method, tmp_path) -> None:
    """DeBERTa-v2/v3 (a tiny random one): AdapterHub 1.3 supports it, and our adapters on it are its own. The
    parallel and Compacter adapters use the same slots as these (and passed too on 2026-12-04); the suite keeps
    one per code path: the two slot kinds, and the prefix in DeBERTa's own attention."""
    base = make_tiny_model(tmp_path / "deberta-v2", "deberta-v2", initializer_range=0.2)
    rows = [{"q": t, "y": "pos"} for t in POSITIVE] + [{"q": t, "y": "neg"} for t in NEGATIVE]
    data = write_csv(tmp_path / "d.csv", rows * 2)
    out = tmp_path / method
    train(TrainConfig(data=str(data), method=method, base_model=str(base), output=str(out), text_column="q",
                      label_column="y", epochs=1, learning_rate=5e-2, batch_size=8))
    texts = [t for t in TEXTS if t]
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    _reference("adapterhub_predict.py", "--base-model", str(base), "--adapter", str(out), "--texts-json",
               str(tmp_path / "texts.json"), "--out", str(tmp_path / "ref.json"))
    ref = torch.tensor(json.loads((tmp_path / "ref.json").read_text())["probabilities"])
    ours = Predictor().probabilities(out, texts, calibrated=False).double()
    assert (ref - ours).abs().max() <= 1e-4
    assert ours.std(0).max() > 1e-4  # the texts are told apart


@pytest.mark.parametrize(("method", "safetensors", "eject"), [
    ("pfeiffer", False, False), ("houlsby", True, False), ("parallel", False, False), ("prefix", False, False),
    ("prefix", False, True), ("compacter", True, False)])
def test_we_import_an_adapterhub_adapter(method, safetensors, eject, bundled_model, tmp_path) -> None:
    (tmp_path / "texts.json").write_text(json.dumps(TEXTS))
    out = tmp_path / "hub_adapter"
    _reference("adapterhub_make_adapter.py", "--base-model", str(bundled_model), "--method", method,
               *(["--reduction-factor", {"parallel": "2", "compacter": "32"}[method]]
                 if method in ("parallel", "compacter") else []),
               "--labels", "neg,neutral,pos", "--out", str(out), "--seed", "3", "--texts-json",
               str(tmp_path / "texts.json"), "--probs-out", str(tmp_path / "ref.json"),
               *(["--safetensors"] if safetensors else []), *(["--eject"] if eject else []))
    assert not (out / "adapterlab.json").exists()
    predictor = Predictor()
    assert predictor.labels(out) == ["neg", "neutral", "pos"]
    ref = torch.tensor(json.loads((tmp_path / "ref.json").read_text())["probabilities"])
    assert (ref - predictor.probabilities(out, TEXTS, calibrated=False).double()).abs().max() <= 1e-4
    # one text alone has no padding, so no attention mask reaches the layers: the same probabilities
    alone = predictor.probabilities(out, TEXTS[:1], calibrated=False).double()
    assert (alone - ref[:1]).abs().max() <= 1e-4


def test_adapterhub_loads_our_fusion_with_the_same_probabilities_and_count(bundled_model, tmp_path) -> None:
    """Two Pfeiffer adapters trained on their own labels, then a fusion trained over them on a third task; the
    fusion folder loads in AdapterHub with the same probabilities, and its fusion layers count as AdapterHub's."""
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    data = write_csv(tmp_path / "d.csv", rows * 2)
    fused = [train(TrainConfig(data=str(data), method="pfeiffer", output=str(tmp_path / name), epochs=1,
                               learning_rate=5e-2, batch_size=8, seed=seed)).adapter_dir
             for name, seed in (("first", 1), ("second", 2))]
    result = train(TrainConfig(data=str(data), method="fusion", output=str(tmp_path / "fusion"), epochs=1,
                               learning_rate=5e-2, batch_size=8, method_options={"fuse": fused}))
    assert result.adapter_params == 2_658_816  # ../shared/reference/adapter-methods.md
    (tmp_path / "texts.json").write_text(json.dumps([t for t in TEXTS if t]))
    _reference("adapterhub_fusion_predict.py", "--base-model", str(bundled_model), "--fusion",
               str(result.adapter_dir), "--texts-json", str(tmp_path / "texts.json"), "--out", str(tmp_path / "r.json"))
    ref = json.loads((tmp_path / "r.json").read_text())
    ours = Predictor().probabilities(result.adapter_dir, [t for t in TEXTS if t], calibrated=False)
    assert ref["fusion_params"] == result.adapter_params and ref["label2id"] == {"neg": 0, "pos": 1}
    assert (torch.tensor(ref["probabilities"]) - ours.double()).abs().max() <= 1e-4
    assert (ours[:, 1] - 0.5).abs().max() > 1e-3  # not trivial: the fusion moved away from an even split
