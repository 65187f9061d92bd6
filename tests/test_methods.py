"""Adapter maths and sizes: equal to AdapterHub's seq_bn/double_seq_bn and PEFT's IA3."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import BertConfig, BertForSequenceClassification, BertModel

from engine.adapter_model import AdapterModel
from engine.errors import ConfigError
from engine.methods.bottleneck import model as bn
from engine.methods.bottleneck.config import BottleneckConfig
from engine.methods.ia3 import model as ia3
from engine.methods.ia3.config import IA3Config, ia3_config
from engine.methods.ia3.layer import IA3Linear


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
    assert len(model.adapter_parameters("ia3")) == 1  # one flat tensor per IA3 adapter


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
    with pytest.raises(ConfigError, match="use_gating"):
        BottleneckConfig.from_adapterhub({**exported, "use_gating": True})
    parallel = BottleneckConfig("parallel", 2)
    assert BottleneckConfig.from_adapterhub({**exported, **parallel.to_adapterhub()}) == parallel
    with pytest.raises(ConfigError, match="scaling"):  # "learned" scaling (scaled_par_bn) is not implemented
        BottleneckConfig.from_adapterhub({**parallel.to_adapterhub(), "scaling": "learned"})


# IA3: our own layers, PEFT's maths, one flat parameter per adapter.

TINY_IA3_COUNT = 2 * (32 + 32 + 32 + 64)  # per layer: key, value (out), attention.output.dense, output.dense (in)


def _tiny_classifier() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                        vocab_size=100, max_position_embeddings=16)
    return BertForSequenceClassification(config).eval()


def _randomise(backbone, name: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ia3.ia3_parameters(backbone, name):
            p.copy_(torch.rand(p.shape, generator=generator) + 0.5)


INPUTS = {"input_ids": torch.tensor([[2, 15, 27, 3, 0], [2, 44, 9, 81, 3]]),
          "attention_mask": torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])}


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**INPUTS).logits


def test_ia3_layer_maths_and_flat_storage() -> None:
    model = _tiny_classifier()
    ia3.add_ia3(model, "a", ia3_config("bert", "tiny"))
    _randomise(model, "a", 0)
    (flat,) = ia3.ia3_parameters(model, "a")
    assert flat.numel() == TINY_IA3_COUNT and flat.dtype == torch.float32
    layers = ia3.ia3_layers(model)
    assert len(layers) == 8 and all(isinstance(layer, IA3Linear) and type(layer.base_layer) is torch.nn.Linear
                                    for layer in layers.values())
    vectors = getattr(model, ia3.REGISTRY)["a"]
    for path in layers:  # every layer's vector is a view into the one flat parameter
        assert vectors.vector(path).untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
    attention = model.bert.encoder.layer[0].attention
    key, dense = attention.self.key, attention.output.dense
    x = torch.randn(2, 5, 32)
    scale_k, scale_d = vectors.vector("bert.encoder.layer.0.attention.self.key"), vectors.vector(
        "bert.encoder.layer.0.attention.output.dense")
    assert torch.allclose(key(x), key.base_layer(x) * scale_k)  # key/value: the output is scaled
    assert torch.allclose(dense(x), dense.base_layer(x * scale_d))  # feed-forward (suffix match): the input
    ia3.set_active_ia3(model, None)
    assert torch.equal(key(x), key.base_layer(x)) and torch.equal(dense(x), dense.base_layer(x))


def test_ia3_vectors_start_at_one_and_leave_the_model_unchanged() -> None:
    model = _tiny_classifier()
    plain = _logits(model)
    ia3.add_ia3(model, "a", ia3_config("bert", "tiny"))
    assert torch.equal(ia3.ia3_parameters(model, "a")[0], torch.ones(TINY_IA3_COUNT))
    assert torch.allclose(_logits(model), plain, atol=1e-6)


def test_two_ia3_adapters_switch_and_each_gives_its_own_logits() -> None:
    base = _tiny_classifier()
    plain = _logits(base)
    singles = {}
    for seed, name in enumerate(("a", "b")):  # reference: a model with that adapter alone
        single = copy.deepcopy(base)
        ia3.add_ia3(single, name, ia3_config("bert", "tiny"))
        _randomise(single, name, seed)
        singles[name] = _logits(single)
    assert not torch.allclose(singles["a"], singles["b"])

    model = copy.deepcopy(base)
    for seed, name in enumerate(("a", "b")):
        ia3.add_ia3(model, name, ia3_config("bert", "tiny"))
        _randomise(model, name, seed)
    assert len(ia3.ia3_layers(model)) == 8  # the second adapter reuses the wrappers
    for name in ("a", "b", "a"):
        ia3.set_active_ia3(model, name)
        assert torch.allclose(_logits(model), singles[name], atol=1e-6)
    for other in (None, "some_bottleneck_adapter"):
        ia3.set_active_ia3(model, other)
        assert torch.allclose(_logits(model), plain, atol=1e-6)
    ia3.set_active_ia3(model, "a")
    ia3.remove_ia3(model, "a")
    assert ia3.ia3_parameters(model, "a") == [] and torch.allclose(_logits(model), plain, atol=1e-6)
    ia3.set_active_ia3(model, "b")
    assert torch.allclose(_logits(model), singles["b"], atol=1e-6)


def test_ia3_vectors_train_move_and_freeze_with_the_backbone() -> None:
    model = _tiny_classifier()
    ia3.add_ia3(model, "a", ia3_config("bert", "tiny"))
    model.requires_grad_(False)  # as AdapterModel.train_adapter does
    (flat,) = ia3.ia3_parameters(model, "a")
    assert not flat.requires_grad
    flat.requires_grad_(True)
    model(**INPUTS).logits.sum().backward()
    assert flat.grad is not None and torch.count_nonzero(flat.grad) > 0.9 * flat.numel()
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [f"{ia3.REGISTRY}.a.ia3_l"]
    model.to(torch.float64)  # stands in for .to(device): the vectors are the backbone's own parameters
    assert ia3.ia3_parameters(model, "a")[0].dtype == torch.float64
    assert _logits(model).dtype == torch.float64


class _DtypeLog(TorchDispatchMode):
    """Records the dtype of every op result of a given shape."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape, self.dtypes = shape, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and tuple(out.shape) == self.shape:
            self.dtypes.append(out.dtype)
        return out


def test_ia3_under_bf16_autocast_keeps_activations_bf16() -> None:
    model = _tiny_classifier()
    ia3.add_ia3(model, "a", ia3_config("bert", "tiny"))
    _randomise(model, "a", 0)
    full = _logits(model)
    key, ff = model.bert.encoder.layer[0].attention.self.key, model.bert.encoder.layer[0].output.dense
    seen = {}

    def key_output(module, inputs, output) -> None:
        seen["key"] = output.dtype

    def ff_input(module, inputs) -> None:
        seen["ff_input"] = inputs[0].dtype

    key.register_forward_hook(key_output)
    ff.base_layer.register_forward_pre_hook(ff_input)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = _logits(model)
        assert seen == {"key": torch.bfloat16, "ff_input": torch.bfloat16}
        x = torch.randn(2, 5, 32, dtype=torch.bfloat16)
        with _DtypeLog((2, 5, 32)) as log:  # no fp32 copy of the activations inside the IA3 layer
            key(x)
    assert log.dtypes and set(log.dtypes) == {torch.bfloat16}
    assert torch.allclose(mixed.float(), full, atol=0.05, rtol=0.05)


def test_ia3_import_is_strict() -> None:
    model = _tiny_classifier()
    ia3.add_ia3(model, "a", ia3_config("bert", "tiny"))
    head = torch.nn.ModuleDict({"classifier": torch.nn.Linear(32, 2)})
    state = ia3.export_state_dict(model, "a", head)
    assert len(state) == 8 + 2
    key = "base_model.model.bert.encoder.layer.1.output.dense.ia3_l"
    for broken in ({k: v for k, v in state.items() if k != key}, {**state, "base_model.model.extra.ia3_l": state[key]},
                   {**state, key: state[key].reshape(-1, 1)}, {**state, key: state[key][:, :10]}):
        with pytest.raises(ValueError):
            ia3.import_state_dict(model, "a", head, broken)
    assert torch.equal(ia3.ia3_parameters(model, "a")[0], torch.ones(TINY_IA3_COUNT))  # nothing half-loaded
    state[key] = torch.full((1, 64), 2.0)
    ia3.import_state_dict(model, "a", head, state)
    assert ia3.ia3_parameters(model, "a")[0].sum().item() == TINY_IA3_COUNT + 64


def test_ia3_config_written_like_peft_and_read_back(tmp_path) -> None:
    from peft import PeftConfig

    config = ia3_config("distilbert", "distilbert-base-uncased")
    assert (config.target_modules, config.feedforward_modules) == (["k_lin", "v_lin", "lin2"], ["lin2"])
    assert config.modules_to_save == ["pre_classifier", "classifier"]
    config.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "adapter_config.json").read_text())
    assert written["peft_type"] == "IA3" and written["inference_mode"] is True and written["fan_in_fan_out"] is False
    loaded = PeftConfig.from_pretrained(str(tmp_path))
    assert type(loaded).__name__ == "IA3Config" and loaded.task_type == "SEQ_CLS"
    assert loaded.target_modules == {"k_lin", "v_lin", "lin2"} and loaded.feedforward_modules == {"lin2"}
    assert loaded.modules_to_save == ["pre_classifier", "classifier"]
    assert loaded.base_model_name_or_path == "distilbert-base-uncased"
    assert IA3Config.from_peft_json(tmp_path) == config
    with pytest.raises(ConfigError, match="regular expression"):
        IA3Config.from_peft_dict({**written, "target_modules": ".*key"})


def test_ia3_config_errors() -> None:
    with pytest.raises(ConfigError, match="no default target modules"):
        ia3_config("gpt2", "gpt2")
    with pytest.raises(ConfigError, match="subset"):
        ia3_config("bert", "x", ["key"], ["output.dense"])
    assert ia3_config("roberta", "x").target_modules == ["key", "value", "output.dense"]
    with pytest.raises(ConfigError, match="only linear layers"):
        ia3.add_ia3(_tiny_classifier(), "a", ia3_config("bert", "x", ["attention"], []))
    with pytest.raises(ConfigError, match="match no module"):
        ia3.add_ia3(_tiny_classifier(), "a", ia3_config("bert", "x", ["nothing_here"], []))
