"""The model card's "how to use it" lines run as printed: PEFT's (IA3, LoRA) and transformers' (full fine-tuning)
here, AdapterHub's (bottleneck) in the reference venv; each gives the logits AdapterLab computes."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import torch

from engine.inference import Predictor
from engine.training import TrainConfig, train
from tests.conftest import NEGATIVE, POSITIVE, write_csv
from tests.test_interop_adapterhub import VENV_PYTHON

TEXT = "some text"


def _trained(tmp_path, tiny_bert, method: str):
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    out = tmp_path / method
    train(TrainConfig(data=str(write_csv(tmp_path / "data.csv", rows)), method=method, output=str(out),
                      base_model=str(tiny_bert), epochs=1, batch_size=8, learning_rate=1e-2))
    return out


def _snippet(folder) -> str:
    card = (folder / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    return code.replace("path/to/this/folder", str(folder))


def _ours(folder) -> torch.Tensor:
    return Predictor().logits(folder, [TEXT])


@pytest.mark.parametrize("method", ["ia3", "lora", "prompt", "full"])
def test_the_card_s_lines_load_it_in_its_library(method, tmp_path, tiny_bert):
    folder = _trained(tmp_path, tiny_bert, method)
    scope: dict = {}
    with torch.no_grad():
        exec(_snippet(folder), scope)  # the lines as a user would paste them
    assert torch.allclose(scope["logits"].float(), _ours(folder), atol=1e-4)


@pytest.mark.interop
@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="AdapterHub reference venv absent: run "
                    "scripts/make_reference_venv.sh")
def test_the_card_s_lines_load_a_bottleneck_adapter_in_adapterhub(tmp_path, tiny_bert):
    folder = _trained(tmp_path, tiny_bert, "pfeiffer")
    code = _snippet(folder) + "\nimport json\nprint(json.dumps(logits.tolist()))\n"
    run = subprocess.run([str(VENV_PYTHON), "-c", code], capture_output=True, text=True, timeout=300, check=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""})
    theirs = torch.tensor(json.loads(run.stdout.strip().splitlines()[-1]))
    assert torch.allclose(theirs, _ours(folder), atol=1e-4)
