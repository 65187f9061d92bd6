"""Adding a method is one class and one registration: a toy method defined here is offered by the command line, the
Train tab and the job schema, trains through the engine, saves, reloads and predicts, with nothing else changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from engine import methods
from engine.heads import adapterhub_head_size
from engine.methods.base import Method, option


@dataclass(frozen=True)
class ShiftOptions:
    shift_scale: float = option(0.5, "Shift scale", "How far the learned shift starts from zero.", low=0)


class Shift(Method):
    """A learned vector added to the first token's last hidden state, before AdapterHub's head."""

    name = "shift"
    label = "Shift (toy)"
    group = "Prompt-based"
    reference = "none (a test)"
    description = "A toy method for the registry test."
    Options: ClassVar[type] = ShiftOptions
    defaults: ClassVar[dict[str, float]] = {"learning_rate": 1e-2, "epochs": 1}
    head = "adapterhub"

    def count(self, options, config, num_labels):
        return config.hidden_size, adapterhub_head_size(config, num_labels)

    def add(self, model, name, labels, options, config=None):
        if not hasattr(model, "_shifts"):
            model.add_module("_shifts", nn.ParameterDict())
        model._shifts[name] = nn.Parameter(torch.full((model.config.hidden_size,), options.shift_scale))
        return options

    def remove(self, model, name):
        del model._shifts[name]

    def activate(self, model, name):
        pass

    def parameters(self, model, name):
        return [model._shifts[name]]

    def logits(self, model, name, batch):
        hidden = model.encoder(**batch).last_hidden_state[:, 0]
        return model.heads[name](hidden + model._shifts[name])

    def save(self, model, name, folder: Path):
        weights = {"shift": model._shifts[name].detach().clone()}
        weights.update({f"head.{k}": v.detach().clone() for k, v in model.heads[name].state_dict().items()})
        save_file(weights, str(folder / "shift.safetensors"))

    def load(self, model, name, folder: Path, meta):
        model.add_adapter(name, self.name, meta["labels"], meta["options"])
        weights = load_file(str(folder / "shift.safetensors"))
        with torch.no_grad():
            model._shifts[name].copy_(weights.pop("shift"))
        model.heads[name].load_state_dict({k.removeprefix("head."): v for k, v in weights.items()})


@pytest.fixture()
def shift(monkeypatch):
    monkeypatch.setitem(methods.REGISTRY, "shift", Shift())  # the one line a new method adds (in _builtin)
    return methods.REGISTRY["shift"]


def test_a_registered_method_is_offered_everywhere(shift) -> None:
    from app.cli import build_parser
    from app.tabs import train as train_tab
    from worker.spec import normalise

    args = build_parser().parse_args(["train", "--data", "x.csv", "--method", "shift", "--shift-scale", "0.1",
                                      "--output", "o"])
    assert args.method == "shift" and args.shift_scale == "0.1"
    assert ("Shift (toy)", "shift") in train_tab.method_choices()
    assert "A toy method for the registry test." in train_tab.method_cards("shift")
    assert normalise({"data": "x.csv", "method": "shift", "shift_scale": "0.1"})["method_options"] == {
        "shift_scale": "0.1"}
    assert methods.option_rows("shift", {"shift_scale": 0.1}) == [("Shift scale", 0.1)]


def test_a_registered_method_trains_saves_and_predicts(shift, sentiment_csv, tiny_bert, tmp_path) -> None:
    from engine.inference import Predictor
    from engine.training import TrainConfig, train

    result = train(TrainConfig(data=str(sentiment_csv), method="shift", output=str(tmp_path / "s"),
                               base_model=str(tiny_bert), batch_size=8, method_options={"shift_scale": 0.25}))
    assert result.adapter_params == 32  # tiny BERT's hidden size
    predictor = Predictor()
    prediction = predictor.predict(result.adapter_dir, "great product")
    assert prediction["label"] in ("neg", "pos")
    # a method without `route` still serves a mixed batch: its rows run through its adapter apart
    assert not shift.mixes
    mixed = predictor.predict_batch(["great product", "awful"], [result.adapter_dir] * 2)
    assert mixed[0]["probabilities"] == pytest.approx(prediction["probabilities"], abs=1e-6)
    with pytest.raises(Exception, match="Shift scale must be at least 0"):
        shift.options({"shift_scale": -1})
