"""The contract every registered method keeps, checked the same way for each: enumerate the registry.

One training step changes only the method's and the head's weights; the saved folder reloads in a fresh process
with the same probabilities; the count from the config equals the built model's; several methods share one base
and switch without touching each other. Counts against the reference libraries: below and in the interop tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from engine import methods
from engine.adapter_io import save_adapter
from engine.adapter_model import AdapterModel
from tests.conftest import ROOT

LABELS = ["neg", "neu", "pos"]
TEXTS = ["i love it", "terrible, broke in a day", "fine I guess, nothing more to say about it", "ok"]
# Non-default options where a method has them, so the options reach the layers (not only the defaults).
OPTIONS = {"houlsby": {"reduction_factor": 8}, "pfeiffer": {"reduction_factor": 4}, "parallel": {"reduction_factor": 8},
           "compacter": {"reduction_factor": 2},
           "lora": {"lora_r": 4, "lora_alpha": 16, "lora_targets": "query,key,value"},
           "prompt": {"num_virtual_tokens": 5, "prompt_init_text": "the sentiment of this review"},
           "prefix": {"prefix_length": 7}}


def _batch(model: AdapterModel) -> dict[str, torch.Tensor]:
    return dict(model.tokenizer(TEXTS, padding=True, return_tensors="pt"))


def _one_step(model: AdapterModel, name: str) -> None:
    params = model.train_adapter(name)
    model.train()
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    F.cross_entropy(model(**_batch(model)), torch.tensor([0, 2, 1, 2])).backward()
    optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory) -> dict:
    """Every registered method trained one step on one shared base; each saved, with its probabilities."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("contract")
    model = AdapterModel(str(tiny_bert))
    out = {"model": model, "folders": {}, "probs": {}, "changed": {}}
    for name in methods.names():
        options = OPTIONS.get(name)
        if name == "fusion":  # fuses two adapters saved above (Houlsby's places: Houlsby and Compacter)
            options = {"fuse": [str(out["folders"]["houlsby"]), str(out["folders"]["compacter"])]}
        model.add_adapter(name, name, LABELS, options)
        before = {k: v.detach().clone() for k, v in model.named_parameters()}
        _one_step(model, name)
        own = {id(p) for p in model.trainable_parameters(name)}
        out["changed"][name] = [(k, id(p) in own) for k, p in model.named_parameters()
                                if k in before and not torch.equal(before[k], p.detach())]
        with torch.no_grad():
            out["probs"][name] = model(**_batch(model)).softmax(-1)
        out["folders"][name] = save_adapter(model, name, folder / name, {"max_length": 128})
    return out


@pytest.mark.parametrize("name", methods.names())
def test_a_step_changes_only_the_method_and_its_head(trained, name) -> None:
    changed = trained["changed"][name]
    assert changed, "one step changed nothing"
    assert all(own for _, own in changed), [k for k, own in changed if not own]


@pytest.mark.parametrize("name", methods.names())
def test_count_from_the_config_equals_the_built_model(trained, name) -> None:
    model = trained["model"]
    method = methods.get(name)
    adapter, head = method.count(model.adapters[name].options, model.config, len(LABELS))
    assert model.parameter_counts(name) == (adapter, adapter + head)
    meta = json.loads((trained["folders"][name] / "adapterlab.json").read_text())
    assert meta["adapter_params"] == adapter and meta["method"] == name


def test_methods_share_one_base_and_switch_without_touching_each_other(trained) -> None:
    """Every adapter's probabilities are unchanged after all the others were added and trained on the same base."""
    model = trained["model"]
    for name in methods.names():
        model.set_active(name)
        with torch.no_grad():
            now = model(**_batch(model)).softmax(-1)
        assert (now - trained["probs"][name]).abs().max() <= 1e-6, name


def test_each_folder_reloads_in_a_fresh_process_with_the_same_probabilities(trained) -> None:
    script = ("import json, sys\nfrom engine.inference import Predictor\np = Predictor()\n"
              "folders, texts = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
              "print(json.dumps({k: p.probabilities(f, texts).tolist() for k, f in folders.items()}))")
    folders = {k: str(v) for k, v in trained["folders"].items()}
    result = subprocess.run([sys.executable, "-c", script, json.dumps(folders), json.dumps(TEXTS)], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=300)
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(reloaded) == set(methods.names())
    for name, probs in reloaded.items():
        diff = (torch.tensor(probs) - trained["probs"][name].double()).abs().max()
        assert diff <= 1e-6, (name, float(diff))
        # the check is not trivial: the step moved the probabilities away from an even split
        assert (trained["probs"][name] - 1 / 3).abs().max() > 1e-3, name


def test_every_method_trains_and_predicts_through_the_engine(sentiment_csv, tiny_bert, tmp_path) -> None:
    from engine.inference import Predictor
    from engine.training import TrainConfig, train

    predictor = Predictor()
    for name in methods.names():
        options = OPTIONS.get(name)
        if name == "fusion":  # over the Houlsby and Compacter adapters trained before it
            options = {"fuse": [str(tmp_path / "houlsby"), str(tmp_path / "compacter")]}
        result = train(TrainConfig(data=str(sentiment_csv), method=name, output=str(tmp_path / name),
                                   base_model=str(tiny_bert), epochs=1, batch_size=8, method_options=options))
        assert result.method == name and result.history
        assert predictor.predict(result.adapter_dir, "great product")["label"] in result.labels


# Measured with the reference libraries on all-MiniLM-L6-v2 (../shared/reference/adapter-methods.md): the method's
# own parameters with each method's default options (prompt tuning: 10 virtual tokens), and its head for 3 labels.
REFERENCE_COUNTS = {"houlsby": (226_080, 148_995), "pfeiffer": (113_040, 148_995), "parallel": (888_192, 148_995),
                    "lora": (73_728, 1_155), "ia3": (16_128, 1_155), "prompt": (3_840, 1_155),
                    "full": (22_713_216, 1_155), "prefix": (2_572_544, 148_995), "compacter": (14_320, 148_995),
                    "fusion": (2_658_816, 148_995)}  # AdapterFusion's layers over two (or more) Pfeiffer adapters


@pytest.mark.parametrize("name", methods.names())
def test_counts_on_the_bundled_model_equal_the_reference_libraries(name) -> None:
    from engine.base_models import load_config, resolve_base_model

    assert name in REFERENCE_COUNTS, f"add {name}'s count, measured with its reference library"
    method = methods.get(name)
    options = method.options({"num_virtual_tokens": 10} if name == "prompt" else None)
    assert method.count(options, load_config(resolve_base_model(None)), 3) == REFERENCE_COUNTS[name]
