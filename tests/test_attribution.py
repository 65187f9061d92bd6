"""Word attributions (Integrated Gradients over the word embeddings): they add up to the logit difference for every
method, pieces merge into words, and Predictor.explain and `adapterlab predict --explain` give them.

The tiny base is initialised at 0.3 rather than 0.02: at 0.02 its first-token state hardly depends on the words,
so every logit difference is ~1e-4 and completeness would hold trivially.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from engine import methods
from engine.adapter_io import save_adapter
from engine.adapter_model import AdapterModel
from engine.attribution import MAX_STEPS, N_STEPS, ROUND_OFF, TOLERANCE, baseline_ids, explain, off_labels
from engine.inference import Predictor
from tests.conftest import NEGATIVE, POSITIVE, make_tiny_model
from tests.test_cli import here
from tests.test_method_contract import OPTIONS

LABELS = ["neg", "pos"]
TEXT = "I found it unbelievably good, but the delivery was slow!"
RATES = {"full": 1e-3, "prompt": 0.1, "prefix": 1e-2}  # the others: 0.05


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> AdapterModel:
    """Every registered method on one tiny base, each trained 10 steps on the sentiment texts."""
    torch.manual_seed(0)
    base = make_tiny_model(tmp_path_factory.mktemp("attr-base"), initializer_range=0.3)
    model = AdapterModel(str(base))
    texts = POSITIVE + NEGATIVE
    batch = dict(model.tokenizer(texts, padding=True, return_tensors="pt"))
    targets = torch.tensor([1] * len(POSITIVE) + [0] * len(NEGATIVE))
    # Fusion last: it fuses adapters trained before it, and the others keep their random draws
    for name in sorted(methods.names(), key=lambda n: n == "fusion"):
        options = OPTIONS.get(name)
        if name == "fusion":  # over the Houlsby and Compacter adapters trained above, saved
            folder = tmp_path_factory.mktemp("attr-fused")
            options = {"fuse": [str(save_adapter(model, n, folder / n, {})) for n in ("houlsby", "compacter")]}
        model.add_adapter(name, name, LABELS, options)
        optimizer = torch.optim.AdamW(model.train_adapter(name), lr=RATES.get(name, 0.05))
        model.train()
        for _ in range(10):
            optimizer.zero_grad()
            F.cross_entropy(model(**batch), targets).backward()
            optimizer.step()
        model.eval()
    return model


def logit_difference(model: AdapterModel, name: str, found) -> torch.Tensor:
    """logit(text) - logit(baseline) per label, computed without captum."""
    model.set_active(name)
    with torch.no_grad():
        text = model(**found.batch)[0]
        baseline = model(**{**found.batch, "input_ids": found.baseline_ids})[0]
    return (text - baseline).double()


@pytest.mark.parametrize("name", methods.names())
def test_attributions_add_up_to_the_logit_difference(model, name) -> None:
    """Completeness, against logits computed here: each label's attributions sum to its logit difference within
    5% of the text's largest logit change (+ 1e-3 of float32 round-off)."""
    found = explain(model, name, TEXT)
    difference = logit_difference(model, name, found)
    total = found.token_scores.sum(-1)
    assert difference.abs().max() > 0.02, "the logits hardly depend on the words: the check would be empty"
    assert TOLERANCE == 0.05 and ROUND_OFF == 1e-3
    assert ((total - difference).abs() <= 0.05 * difference.abs().max() + 1e-3).all(), (total, difference)
    assert torch.allclose(found.deltas, total - difference, atol=1e-4)  # captum's delta is this same miss
    assert N_STEPS <= found.n_steps <= MAX_STEPS


def test_too_few_points_are_doubled_until_the_attributions_add_up(model) -> None:
    found = explain(model, "houlsby", TEXT, n_steps=2)
    assert found.n_steps > 2 and off_labels(found.token_scores, found.deltas) == []
    assert off_labels(torch.tensor([[1.0, 1.0]]), torch.tensor([0.09])) == []  # 0.09 off a difference of 1.91
    scores = torch.tensor([[1.0, 1.0], [0.5, 0.0], [0.0, 0.0]])  # differences 1.91, 0.3, -0.01
    assert off_labels(scores, torch.tensor([0.09, 0.2, 0.01])) == [1]  # more than 5% of 1.91 + 1e-3 off


def test_each_method_is_explained_through_the_embeddings_it_uses(model) -> None:
    shared = model.backbone.get_input_embeddings()
    assert all(model.input_embeddings(name) is shared for name in methods.names() if name != "full")
    own = model.input_embeddings("full")
    assert isinstance(own, torch.nn.Embedding) and own is not shared
    assert not torch.equal(own.weight, shared.weight)  # trained: its own copy moved


def test_pieces_merge_into_words_and_special_tokens_are_left_out(model) -> None:
    found = explain(model, "lora", TEXT)
    assert found.tokens[:9] == ["[CLS]", "i", "found", "it", "un", "##bel", "##ie", "##va", "##bly"]
    assert found.words == ["I", "found", "it", "unbelievably", "good", ",", "but", "the", "delivery", "was", "slow",
                           "!"]
    scores = found.token_scores
    assert torch.allclose(found.word_scores[:, 3], scores[:, 4:9].sum(-1))
    assert torch.allclose(found.word_scores.sum(-1), scores[:, 1:-1].sum(-1))  # all but [CLS] and [SEP]
    word, weight = found.words_for(1)[3]
    assert word == "unbelievably" and weight == pytest.approx(float(scores[1, 4:9].sum()))


def test_the_baseline_pads_the_words_and_keeps_the_special_tokens(model) -> None:
    found = explain(model, "houlsby", "good morning", "bad night")
    cls, sep, pad = (model.tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    assert found.baseline_ids.tolist() == [[cls, pad, pad, sep, pad, pad, sep]]
    assert found.words == ["good", "morning", "bad", "night"]
    assert torch.equal(baseline_ids(torch.tensor([[5, 6]]), torch.tensor([[True, False]]), 0), torch.tensor([[5, 0]]))


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    return save_adapter(model, "ia3", tmp_path_factory.mktemp("attr-saved") / "ia3", {"max_length": 128})


def test_predictor_explain_gives_the_prediction_and_each_labels_words(folder) -> None:
    predictor = Predictor()
    result = predictor.explain(folder, TEXT)
    assert {k: result[k] for k in ("label", "probabilities")} == predictor.predict(folder, TEXT)
    assert list(result["attributions_by_label"]) == LABELS
    assert result["attributions"] == result["attributions_by_label"][result["label"]]
    assert [w for w, _ in result["attributions"]][:4] == ["I", "found", "it", "unbelievably"]
    assert all(isinstance(w, float) for _, w in result["attributions"])
    pushes = {label: [w for _, w in words] for label, words in result["attributions_by_label"].items()}
    assert pushes["neg"] != pushes["pos"]


def test_cli_explain_json_and_plain(folder, capsys) -> None:
    out = json.loads(here(capsys, "predict", "--adapter", str(folder), "--text", TEXT, "--explain", "--json").stdout)
    assert set(out) == {"label", "probabilities", "attributions"} and out["label"] in LABELS
    assert [w for w, _ in out["attributions"]] == ["I", "found", "it", "unbelievably", "good", ",", "but", "the",
                                                   "delivery", "was", "slow", "!"]
    assert all(isinstance(w, str) and isinstance(x, float) for w, x in out["attributions"])
    plain = here(capsys, "predict", "--adapter", str(folder), "--text", "i love it", "--explain").stdout.splitlines()
    assert plain[0] in LABELS and f"words toward {plain[0]} (+) and away from it (-):" in plain
    assert [line.split()[0] for line in plain[-3:]] == ["i", "love", "it"]
    wrong = here(capsys, "predict", "--adapter", str(folder), "--input", "x.csv", "--output", "y.csv", "--explain",
                 check=False)
    assert wrong.returncode == 2 and "--explain needs --text" in wrong.stderr
