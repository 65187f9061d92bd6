"""The training speed levers change no result: first-token last layer, bf16-stored frozen weights, base dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.adapter_model import AdapterModel
from engine.first_token import set_first_token_only
from tests.conftest import make_tiny_model

TEXTS = ["a short one", "a somewhat longer sentence with more words in it", "mid length text here"]


def _logits(model: AdapterModel, bf16: bool = False) -> torch.Tensor:
    batcher = model.batcher(32, bf16=bf16)
    model.eval()
    with torch.no_grad(), batcher.autocast():
        return model(**batcher.collate(batcher.encode(TEXTS))).float()


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert", "electra"])
@pytest.mark.parametrize("method", ["pfeiffer", "houlsby", "ia3"])
def test_first_token_last_layer_changes_no_logit(model_type, method, tmp_path) -> None:
    model = AdapterModel(str(make_tiny_model(tmp_path / model_type, model_type)))
    model.add_adapter("x", method, ["a", "b", "c"])
    with torch.no_grad():  # adapters start as identities: randomise them so they matter
        for p in model.trainable_parameters("x"):
            p.add_(torch.randn_like(p) * 0.1)
    fast = _logits(model)
    batcher = model.batcher(32)
    with torch.no_grad():
        hidden = model.encoder(**batcher.collate(batcher.encode(TEXTS))).last_hidden_state
    assert hidden.shape[1] == 1  # the last layer really ran on the first token only
    assert set_first_token_only(model.encoder, False)
    full = _logits(model)
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-5)


def test_bf16_stored_frozen_weights_give_the_autocast_numbers(tiny_bert) -> None:
    model = AdapterModel(str(tiny_bert))
    model.add_adapter("x", "pfeiffer", ["a", "b"])
    model.train_adapter("x")
    before = _logits(model, bf16=True)
    model.frozen_linears_to(torch.bfloat16)
    frozen = [m for m in model.encoder.modules() if type(m) is nn.Linear and not m.weight.requires_grad]
    assert frozen and all(m.weight.dtype == torch.bfloat16 for m in frozen)
    assert all(p.dtype == torch.float32 for p in model.trainable_parameters("x"))
    assert torch.equal(_logits(model, bf16=True), before)


@pytest.mark.parametrize("base_dropout", [False, True])
def test_base_dropout_is_off_while_training_unless_asked(base_dropout, tiny_bert) -> None:
    model = AdapterModel(str(tiny_bert))
    model.add_adapter("x", "ia3", ["a", "b"])
    model.base_dropout = base_dropout
    model.train()
    in_encoder = [m.training for m in model.encoder.modules() if isinstance(m, nn.Dropout)]
    assert in_encoder and all(t == base_dropout for t in in_encoder)
    assert model.backbone.dropout.training  # the classification head's dropout stays on
    model.eval()
    assert not any(m.training for m in model.modules())


def test_bf16_batches_are_padded_to_a_multiple_of_4_and_padding_changes_no_logit(tiny_bert) -> None:
    model = AdapterModel(str(tiny_bert))
    model.add_adapter("x", "houlsby", ["a", "b"])
    bf16, exact = model.batcher(20, bf16=True), model.batcher(20, bf16=False)
    short = bf16.collate(bf16.encode(["one two three"]))  # 5 tokens with [CLS] and [SEP]
    assert short["input_ids"].shape == (1, 8) and short["attention_mask"].sum() == 5
    assert exact.collate(exact.encode(["one two three"]))["input_ids"].shape == (1, 5)
    long = bf16.collate(bf16.encode(["word " * 40]))
    assert long["input_ids"].shape == (1, 20)  # never past max_length
    model.eval()
    with torch.no_grad():
        exact.pad_multiple = 4  # the same padding in fp32, so only the padding differs
        padded = model(**exact.collate(exact.encode(TEXTS)))
        exact.pad_multiple = 1
        torch.testing.assert_close(padded, model(**exact.collate(exact.encode(TEXTS))), rtol=0, atol=1e-5)
