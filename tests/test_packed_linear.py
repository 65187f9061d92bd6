"""Frozen linears packed for oneDNN (engine/packed_linear.py): the same numbers as `nn.Linear`, for every method's
adapters on top of them, with gradients and in-place weight changes still honoured."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.inference import Predictor
from engine.packed_linear import PackedLinear, available, pack_frozen_linears
from tests.conftest import NEGATIVE, POSITIVE, make_tiny_model
from tests.test_mixed_batches import _adapters

pytestmark = pytest.mark.skipif(not available(), reason="this PyTorch build has no oneDNN")


def _frozen(in_features: int, out_features: int) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_features, out_features).requires_grad_(False)


@pytest.mark.parametrize("shape", [(1, 384), (7, 3, 384), (64, 20, 384)])
def test_a_packed_linear_gives_the_linears_output(shape) -> None:
    plain = _frozen(384, 96)
    packed = _frozen(384, 96)
    assert pack_frozen_linears(packed) == 1 and type(packed) is PackedLinear
    x = torch.randn(shape)
    with torch.inference_mode():
        assert torch.allclose(packed(x), plain(x), atol=1e-5)
    assert packed.state_dict().keys() == plain.state_dict().keys()


def test_a_changed_weight_is_packed_again_and_gradients_take_the_plain_path() -> None:
    layer = _frozen(16, 8)
    pack_frozen_linears(layer)
    x = torch.randn(4, 16)
    with torch.no_grad():
        layer.weight.mul_(2)  # in place, as load_state_dict does
        assert torch.allclose(layer(x), x @ layer.weight.T + layer.bias, atol=1e-5)
    x.requires_grad_(True)
    layer(x).sum().backward()  # word attributions take gradients through the frozen base
    assert torch.allclose(x.grad, layer.weight.sum(0).expand(4, 16), atol=1e-5)


def test_trainable_and_non_float32_linears_are_left_alone() -> None:
    model = nn.Sequential(nn.Linear(8, 8), _frozen(8, 8).to(torch.bfloat16))
    assert pack_frozen_linears(model) == 0
    assert [type(m) for m in model] == [nn.Linear, nn.Linear]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> list:
    base = make_tiny_model(tmp_path_factory.mktemp("packed-bert"), initializer_range=0.2)
    return _adapters(base, tmp_path_factory.mktemp("packed-adapters"))


def test_every_methods_predictions_are_the_same_on_packed_weights(adapters) -> None:
    """The Predictor packs its base model's frozen linears on CPU; IA3 wraps them, LoRA hooks them, bottleneck
    adapters sit after them: each adapter's probabilities equal those with the plain linears."""
    texts = POSITIVE[:3] + NEGATIVE[:3]
    predictor = Predictor("cpu")
    packed = {str(f): predictor.probabilities(f, texts) for f in adapters}
    layers = [m for model in predictor.models.values() for m in model.modules() if type(m) is PackedLinear]
    assert layers, "the Predictor packed nothing"
    for layer in layers:
        layer.__class__ = nn.Linear
    for folder, probabilities in packed.items():
        assert torch.allclose(predictor.probabilities(folder, texts), probabilities, atol=1e-5), folder
