"""Rows of one batch on different adapters: every registered method, one forward pass, the same probabilities
as predicting each row with its adapter alone."""

from __future__ import annotations

import random

import pytest
import torch

from engine import methods
from engine.adapter_io import read_metadata, save_adapter
from engine.adapter_model import AdapterModel
from engine.base_models import architecture, load_config, resolve_base_model
from engine.errors import ConfigError
from engine.inference import Predictor
from engine.methods.prefix.method import SUPPORTED as PREFIX_TYPES
from tests.conftest import NEGATIVE, POSITIVE, make_tiny_model

# Two adapters of some methods, with different options (prefix and prompt lengths pad against each other),
# label counts (2 and 3) and max lengths (a row is truncated by its own adapter's).
VARIANTS = {"prefix": [{"prefix_length": 7}, {"prefix_length": 3}],
            "prompt": [{"num_virtual_tokens": 5}, {"num_virtual_tokens": 2}],
            "lora": [{"lora_r": 4, "lora_targets": "KEYS"}, {"lora_r": 2}],
            "ia3": [None, None], "pfeiffer": [None, {"reduction_factor": 4}], "compacter": [{"reduction_factor": 2}]}
KEYS = {"distilbert": "q_lin,k_lin,v_lin", "deberta-v2": "query_proj,key_proj,value_proj",
        "modernbert": "Wqkv,attn.Wo", "qwen2": "q_proj,k_proj,v_proj"}
TEXTS = POSITIVE + NEGATIVE + ["fine I guess, nothing more to say about it, really nothing at all", "ok"]


def _adapters(base, folder) -> list:
    """Every method the base model takes, its weights moved off their initial values (which are often the
    identity: a mix would match trivially), saved."""
    torch.manual_seed(0)
    model = AdapterModel(str(base))
    folders = []
    for method in methods.names():
        for k, options in enumerate(VARIANTS.get(method, [None])):
            name = f"{method}{k}"
            if options and options.get("lora_targets") == "KEYS":  # more targets than the default's, per layer
                options = {**options, "lora_targets": KEYS.get(model.config.model_type, "query,key,value")}
            labels = ["neg", "neu", "pos"] if k == 0 else ["no", "yes"]
            if (method == "prefix" and model.config.model_type not in PREFIX_TYPES
                    or architecture(model.config) not in methods.get(method).architectures):
                continue  # prefix tuning supports BERT, RoBERTa, ELECTRA and XLM-R; decoders take no bottlenecks
            if method == "fusion":  # over the Houlsby and Compacter adapters saved above
                options = {"fuse": [str(folder / "houlsby0"), str(folder / "compacter0")]}
            model.add_adapter(name, method, labels, options)
            with torch.no_grad():
                for p in model.trainable_parameters(name):
                    p.add_(torch.randn_like(p) * 0.2)
            max_length = 8 if k == 1 else 128
            folders.append(save_adapter(model, name, folder / name, {"max_length": max_length}))
    return folders


@pytest.fixture(scope="module", params=["bert", "distilbert", "deberta-v2", "modernbert", "qwen2"])
def adapters(request, tmp_path_factory) -> list:
    base = make_tiny_model(tmp_path_factory.mktemp(f"mixed-{request.param}"), request.param,
                           initializer_range=0.2)
    return _adapters(base, tmp_path_factory.mktemp("adapters"))


def test_a_random_mix_of_every_method_equals_each_row_alone(adapters) -> None:
    kind = architecture(load_config(resolve_base_model(read_metadata(adapters[0])["base_model"])))
    fitting = {m for m in methods.names() if kind in methods.get(m).architectures}
    assert {f.name.rstrip("01") for f in adapters} >= fitting - {"prefix"}
    rng = random.Random(0)
    texts = [rng.choice(TEXTS) for _ in range(96)]
    chosen = [rng.choice(adapters) for _ in texts]
    predictor = Predictor(batch_size=32)
    mixed = predictor.predict_batch(texts, chosen)
    worst = 0.0
    for text, folder, got in zip(texts, chosen, mixed, strict=True):
        alone = predictor.predict(folder, text)
        assert got["label"] == alone["label"] and list(got["probabilities"]) == list(alone["probabilities"])
        worst = max(worst, *(abs(got["probabilities"][k] - p) for k, p in alone["probabilities"].items()))
    assert worst <= 1e-5
    # not trivial: the adapters disagree with each other on the same text
    spread = {tuple(predictor.predict(f, TEXTS[0])["probabilities"].values()) for f in adapters}
    assert len(spread) == len(adapters)


def test_a_mixed_batch_leaves_the_active_adapter_and_heads_as_they_were(adapters) -> None:
    predictor = Predictor()
    for folder in adapters:
        predictor.load(folder)
    before = predictor.predict(adapters[0], TEXTS[0])
    model, name = predictor.load(adapters[0])
    heads = {k: id(v) for k, v in model.backbone.named_children()}
    predictor.predict_batch(TEXTS[:4], adapters[-4:])
    assert model.active == name and {k: id(v) for k, v in model.backbone.named_children()} == heads
    assert predictor.predict(adapters[0], TEXTS[0]) == before


def test_mismatched_lengths_are_refused_in_words(adapters) -> None:
    with pytest.raises(ConfigError, match="3 texts need as many adapters"):
        Predictor().predict_batch(TEXTS[:3], adapters[:2])
