"""LoRA and prompt tuning equal PEFT's, both ways: PEFT loads our folders, we load folders PEFT made, with the same
probabilities. Full fine-tuning folders load in plain transformers. (IA3: tests/test_adapter_io.py.)"""

from __future__ import annotations

import peft
import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from engine.adapter_io import save_adapter
from engine.adapter_model import AdapterModel
from engine.inference import Predictor

LABELS = ["neg", "neu", "pos"]
TEXTS = ["i love it", "terrible, broke in a day", "fine I guess, nothing more to say about it", "ok"]
OPTIONS = {"lora": {"lora_r": 4, "lora_alpha": 16, "lora_targets": "query,key,value"},
           "prompt": {"num_virtual_tokens": 6, "prompt_init_text": "the sentiment of this review"}, "full": {}}


def _ours(tiny_bert, name: str, folder) -> torch.Tensor:
    """Our adapter trained three steps and saved; its probabilities on TEXTS."""
    torch.manual_seed(0)
    model = AdapterModel(str(tiny_bert))
    model.add_adapter(name, name, LABELS, OPTIONS[name])
    params = model.train_adapter(name)
    optimizer = torch.optim.AdamW(params, lr=3e-2)
    batch = dict(model.tokenizer(TEXTS, padding=True, return_tensors="pt"))
    for _ in range(3):
        F.cross_entropy(model(**batch), torch.tensor([0, 2, 1, 2])).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    save_adapter(model, name, folder, {"max_length": 128})
    with torch.no_grad():
        return model(**batch).softmax(-1)


def _base(tiny_bert) -> AutoModelForSequenceClassification:
    return AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=len(LABELS)).eval()


def _probs(net, tiny_bert) -> torch.Tensor:
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(tiny_bert)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return net(**batch).logits.softmax(-1)


@pytest.mark.parametrize("name", ["lora", "prompt"])
def test_peft_loads_our_folder(name, tiny_bert, tmp_path) -> None:
    ours = _ours(tiny_bert, name, tmp_path)
    config = peft.PeftConfig.from_pretrained(tmp_path)
    assert config.task_type == "SEQ_CLS"
    theirs = _probs(PeftModel.from_pretrained(_base(tiny_bert), tmp_path).eval(), tiny_bert)
    assert (theirs - ours).abs().max() <= 1e-5
    assert (_probs(_base(tiny_bert), tiny_bert) - ours).abs().max() > 1e-3  # the adapter did change the output


def _peft_made(name: str, tiny_bert, folder) -> torch.Tensor:
    """A folder PEFT made (its own init, weights moved off it at random), and PEFT's probabilities."""
    torch.manual_seed(1)
    config = (peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
              if name == "lora" else peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=7))
    net = peft.get_peft_model(_base(tiny_bert), config)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    net.eval().save_pretrained(folder)
    return _probs(net, tiny_bert)


@pytest.mark.parametrize("name", ["lora", "prompt"])
def test_we_load_a_folder_peft_made(name, tiny_bert, tmp_path) -> None:
    theirs = _peft_made(name, tiny_bert, tmp_path)
    predictor = Predictor()
    assert predictor.labels(tmp_path) == ["LABEL_0", "LABEL_1", "LABEL_2"]  # PEFT keeps no label names
    assert (predictor.probabilities(tmp_path, TEXTS, calibrated=False) - theirs).abs().max() <= 1e-5


def test_full_fine_tuning_folder_is_a_plain_transformers_model(tiny_bert, tmp_path) -> None:
    ours = _ours(tiny_bert, "full", tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert plain.config.id2label == dict(enumerate(LABELS))
    assert (_probs(plain, tmp_path) - ours).abs().max() <= 1e-6
    assert (_probs(_base(tiny_bert), tiny_bert) - ours).abs().max() > 1e-3
    assert Predictor().labels(tmp_path) == LABELS


@pytest.mark.parametrize("name", ["lora", "prompt", "ia3"])
def test_counts_equal_peft(name, tiny_bert) -> None:
    from engine import methods
    from engine.base_models import load_config

    lora = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=16, target_modules=["query", "key", "value"])
    configs = {"lora": lora,
               "prompt": peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=6),
               "ia3": peft.IA3Config(task_type="SEQ_CLS")}
    trainable, _ = peft.get_peft_model(_base(tiny_bert), configs[name]).get_nb_trainable_parameters()
    method = methods.get(name)
    adapter, head = method.count(method.options(OPTIONS.get(name)), load_config(str(tiny_bert)), len(LABELS))
    assert adapter + head == trainable
