"""Adapter maths and sizes: equal to AdapterHub's seq_bn/double_seq_bn and PEFT's IA3."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from engine.adapter_model import AdapterModel
from engine.errors import ConfigError
from engine.methods.bottleneck import model as bn
from engine.methods.bottleneck.config import BottleneckConfig
from engine.methods.ia3 import model as ia3
from engine.methods.ia3.config import ia3_config


def _count(params) -> int:
    return sum(p.numel() for p in params)


@pytest.mark.parametrize(("method", "expected"), [("pfeiffer", 894_528), ("houlsby", 1_789_056)])
def test_bottleneck_parameters_on_bert_base(method: str, expected: int) -> None:
    encoder = BertModel(BertConfig())
    bn.add_bottleneck(encoder, "x", BottleneckConfig(method, 16), 768)
    assert _count(p for m in bn.bottleneck_modules(encoder, "x").values() for p in m.parameters()) == expected


def test_ia3_parameters_on_bert_base() -> None:
    model = BertForSequenceClassification(BertConfig())
    ia3.add_ia3(model, "x", ia3_config("bert", "bert-base-uncased"))
    assert _count(ia3.ia3_parameters(model, "x")) == 64_512


@pytest.mark.integration
def test_parameter_counts_on_bundled_model() -> None:
    model = AdapterModel()
    for method in ("pfeiffer", "houlsby", "ia3"):
        model.add_adapter(method, method, ["a", "b"])
    assert model.parameter_counts("pfeiffer") == (113_040, 113_040 + 148_610)
    assert model.parameter_counts("houlsby")[0] == 226_080
    assert model.parameter_counts("ia3") == (16_128, 16_128 + 770)


def test_reduction_factor_leaving_no_units_is_refused() -> None:
    with pytest.raises(ConfigError, match="too large for hidden size 384"):
        BottleneckConfig("pfeiffer", 512).bottleneck_size(384)
    with pytest.raises(ConfigError, match="positive"):
        BottleneckConfig("houlsby", 0)


def _residual_block():
    config = BertConfig(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                        hidden_dropout_prob=0.0)
    encoder = BertModel(config).eval()
    return encoder, encoder.encoder.layer[0]


@pytest.mark.parametrize("method", ["pfeiffer", "houlsby"])
def test_bottleneck_residual_maths(method: str) -> None:
    torch.manual_seed(0)
    encoder, layer = _residual_block()
    x, r = torch.randn(2, 3, 32), torch.randn(2, 3, 16)
    plain = layer.output(x, r)
    bn.add_bottleneck(encoder, "a", BottleneckConfig(method, 4), 16)
    adapter = layer.output.adapters.adapters["a"]
    with torch.no_grad():
        adapter.adapter_up.bias.normal_()  # non-zero, so the adapter visibly changes the output
    bn.set_active_bottleneck(encoder, None)
    assert torch.allclose(layer.output(x, r), plain)
    bn.set_active_bottleneck(encoder, "a")
    out = layer.output
    h = out.dense(x)
    ln = out.LayerNorm
    down, act, up = adapter.adapter_down[0], adapter.adapter_down[1], adapter.adapter_up

    def a(z: torch.Tensor) -> torch.Tensor:
        return up(act(down(z)))

    expected = ln(h + a(ln(h + r)) + r) if method == "pfeiffer" else ln(h + a(h) + r)
    assert torch.allclose(out(x, r), expected, atol=1e-6)
    assert isinstance(act, torch.nn.ReLU if method == "pfeiffer" else torch.nn.SiLU)
    assert ("a" in layer.attention.output.adapters.adapters) == (method == "houlsby")


def test_bottleneck_init_is_bert_style() -> None:
    torch.manual_seed(0)
    encoder = BertModel(BertConfig())
    bn.add_bottleneck(encoder, "a", BottleneckConfig("houlsby", 16), 768)
    adapters = list(bn.bottleneck_modules(encoder, "a").values())
    weights = torch.cat([m.adapter_down[0].weight.flatten() for m in adapters])
    assert abs(weights.std().item() - 0.02) < 0.001
    assert all(torch.count_nonzero(m.adapter_up.bias) == 0 for m in adapters)


def test_adapterhub_config_round_trip() -> None:
    config = BottleneckConfig("houlsby", 8)
    exported = config.to_adapterhub()
    assert exported["mh_adapter"] and exported["non_linearity"] == "swish" and exported["reduction_factor"] == 8
    assert BottleneckConfig.from_adapterhub(exported) == config
    with pytest.raises(ConfigError, match="is_parallel"):
        BottleneckConfig.from_adapterhub({**exported, "is_parallel": True})
