"""engine/bert_model.py computes what transformers' BertForSequenceClassification computes, from the same
checkpoint, and leaves to transformers what it does not cover."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, make_tiny_model
from transformers import AutoConfig, AutoModelForSequenceClassification

from engine import bert_model
from engine.adapter_model import AdapterModel
from engine.base_models import load_config, load_tokenizer, skeleton

TEXTS = ["a fine film", "the worst thing I have seen in years, and I have seen many", "ok"]


def _pair(folder):
    """Ours and transformers' model of `folder`, loaded after the same seed (so the new classifiers match)."""
    torch.manual_seed(3)
    ours = bert_model.load(str(folder), load_config(str(folder)), num_labels=3)
    after_ours = torch.randn(4)
    torch.manual_seed(3)
    theirs = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=3)
    after_theirs = torch.randn(4)
    assert torch.equal(after_ours, after_theirs), "loading must draw the same random numbers as transformers does"
    return ours.eval(), theirs.eval()


@pytest.mark.parametrize("model", ["bundled", "tiny"])
def test_same_outputs_as_transformers(model, bundled_model, tiny_bert):
    folder = bundled_model if model == "bundled" else tiny_bert
    ours, theirs = _pair(folder)
    assert isinstance(ours, bert_model.BertForSequenceClassification)
    assert torch.equal(ours.classifier.weight, theirs.classifier.weight)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    batch = load_tokenizer(str(folder))(TEXTS, padding=True, return_tensors="pt")  # padded rows
    with torch.no_grad():
        a, b = ours(**batch, output_hidden_states=True), theirs(**batch, output_hidden_states=True)
        torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)
        assert len(a.hidden_states) == len(b.hidden_states)
        for x, y in zip(a.hidden_states, b.hidden_states, strict=True):
            mask = batch["attention_mask"].bool()  # padded positions are never read
            torch.testing.assert_close(x[mask], y[mask], atol=1e-5, rtol=1e-5)
        embeds = ours.get_input_embeddings()(batch["input_ids"])  # prompt tuning's way in
        rest = {k: v for k, v in batch.items() if k != "input_ids"}
        torch.testing.assert_close(ours(inputs_embeds=embeds, **rest).logits,
                                   theirs(inputs_embeds=embeds, **rest).logits, atol=1e-5, rtol=1e-5)


def test_same_gradients_as_transformers(tiny_bert):
    """A training step's gradients reach the same numbers (dropout off, as the engine trains the frozen base)."""
    ours, theirs = _pair(tiny_bert)
    batch = load_tokenizer(str(tiny_bert))(TEXTS, padding=True, return_tensors="pt")
    grads = []
    for model in (ours, theirs):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(**batch).logits, torch.tensor([0, 1, 2])).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_bf16_training_attention_matches_sdpa(mask_kind, monkeypatch):
    """Training in bf16 on CPU writes attention out (bf16 products, fp32 softmax) instead of SDPA's fp32 maths:
    the outputs and the gradients stay within bf16's rounding of SDPA's, with padded keys never seen."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 10, 8, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    visible = torch.arange(10)[None, :] < torch.tensor([10, 7, 3])[:, None]  # rows padded after 10, 7 and 3 keys
    hidden = ~visible[:, None, None, :]
    mask = {"bool": ~hidden, "additive": torch.zeros(3, 1, 1, 10).masked_fill(hidden, torch.finfo(torch.float32).min),
            "none": None}[mask_kind]
    outs, grads = [], []
    for width in (bert_model.MATH_ATTENTION_WIDTH, 0):  # the written-out path, then SDPA
        monkeypatch.setattr(bert_model, "MATH_ATTENTION_WIDTH", width)
        out, _ = bert_model.eager_attention_forward(None, q, k, v, mask, scaling=8**-0.5)
        out.float().square().sum().backward()
        outs.append(out.float().detach())
        grads.append([t.grad.float().clone() for t in (q, k, v)])
        for t in (q, k, v):
            t.grad = None
    assert outs[0].shape == (3, 10, 4, 8)
    assert not torch.equal(outs[0], outs[1])  # two different computations
    torch.testing.assert_close(outs[0], outs[1], atol=0.03, rtol=0.02)
    for ours, sdpa in zip(*grads, strict=True):
        torch.testing.assert_close(ours, sdpa, atol=0.06, rtol=0.03)
    if mask_kind != "none":  # a padded key's value changes nothing
        v2 = v.detach().clone()
        v2[2, :, 5] += 100
        monkeypatch.undo()
        again, _ = bert_model.eager_attention_forward(None, q, k, v2.requires_grad_(), mask, scaling=8**-0.5)
        torch.testing.assert_close(again.float()[2], outs[0][2], atol=0, rtol=0)


def test_skeleton_counts_as_transformers(tiny_bert):
    with torch.device("meta"):
        theirs = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(str(tiny_bert)))
    ours = skeleton(load_config(str(tiny_bert)))
    assert isinstance(ours, bert_model.BertForSequenceClassification)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize("change", ["gelu_new", "fp16", "no pooler", "relative positions"])
def test_other_checkpoints_load_through_transformers(tmp_path, change):
    """What these modules do not compute, transformers loads, and the adapter model works on it as before."""
    settings = {"gelu_new": {"hidden_act": "gelu_new"},
                "relative positions": {"position_embedding_type": "relative_key"}}.get(change, {})
    folder = make_tiny_model(tmp_path / "m", **settings)
    if change in ("fp16", "no pooler"):
        from safetensors.torch import load_file, save_file

        state = load_file(str(folder / "model.safetensors"))
        state = ({k: v.half() for k, v in state.items()} if change == "fp16"
                 else {k: v for k, v in state.items() if not k.startswith("pooler.")})
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    assert bert_model.load(str(folder), load_config(str(folder))) is None
    model = AdapterModel(str(folder))
    assert type(model.backbone).__module__.startswith("transformers.")
    model.add_adapter("a", "pfeiffer", ["neg", "pos"])
    with torch.no_grad():
        assert model(**model.batcher(32).collate(model.batcher(32).encode(TEXTS))).shape == (3, 2)


def test_training_never_imports_transformers_modelling(tmp_path, tiny_bert):
    """The point of the module: a training run on a BERT checkpoint does without transformers' modelling code
    (about 2 s and 130 MiB of imports per process)."""
    rows = "\n".join(f"{t},{i % 2}" for i, t in enumerate(["good", "bad", "fine film", "awful"] * 4))
    (tmp_path / "d.csv").write_text("text,label\n" + rows + "\n")
    script = (
        "import json, sys\n"
        "from engine.training import TrainConfig, train\n"
        f"train(TrainConfig(data={str(tmp_path / 'd.csv')!r}, method='pfeiffer', output={str(tmp_path / 'out')!r}, "
        f"base_model={str(tiny_bert)!r}, epochs=1, batch_size=4))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'transformers.modeling_utils'\n"
        "                          or m.startswith('transformers.models.bert.modeling'))))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("method", ["houlsby", "prefix", "lora", "ia3"])
def test_last_layer_attends_from_the_first_token_alone_with_the_same_logits(method, tiny_bert):
    """engine/first_token.py's cut (only position 0 attends in the last layer) changes no logit, with the adapters
    that sit in that attention (Houlsby's, prefix tuning's keys and values, LoRA on the query, IA3)."""
    from engine.first_token import last_layer, set_first_token_only

    torch.manual_seed(0)
    model = AdapterModel(str(tiny_bert))
    model.add_adapter("a", method, ["neg", "pos", "other"])
    with torch.no_grad():
        for p in model.trainable_parameters("a"):
            p.add_(torch.randn_like(p) * 0.1)  # away from the identity an adapter starts at
    model.eval()
    batcher = model.batcher(32)
    batch = batcher.collate(batcher.encode(TEXTS))
    assert last_layer(model.encoder).first_token_only
    with torch.no_grad():
        cut = model(**batch)
        set_first_token_only(model.encoder, False)
        whole = model(**batch)
    torch.testing.assert_close(cut, whole, atol=1e-5, rtol=1e-5)


def test_a_hub_id_in_the_local_cache_loads_from_its_snapshot(tmp_path, tiny_bert, monkeypatch):
    """A BERT a user downloaded by its hub id (the Hugging Face cache's layout) loads here too; one not in the cache
    is left to transformers (which downloads it, or says it is not on this machine)."""
    import shutil

    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--acme--tiny-bert" / "snapshots" / "abc123"
    shutil.copytree(tiny_bert, snapshot)
    (tmp_path / "hub" / "models--acme--tiny-bert" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--tiny-bert" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    config = load_config(str(tiny_bert))
    cached, folder = bert_model.load("acme/tiny-bert", config), bert_model.load(str(tiny_bert), config)
    assert cached is not None
    for (name, a), (_, b) in zip(cached.bert.state_dict().items(), folder.bert.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert bert_model.load("acme/not-downloaded", config) is None
