"""DeBERTa-v2, ModernBERT and decoder LLMs (Qwen2, Llama, Gemma) as base models, on tiny random models built here:
every method that fits trains, saves and predicts the same in a fresh process; IA3 and LoRA folders load in
PEFT with the same probabilities; ModernBERT's adapters do BERT's maths without its post-residual LayerNorm."""

from __future__ import annotations

import json
import subprocess
import sys

import peft
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from engine import methods
from engine.adapter_model import AdapterModel
from engine.base_models import architecture, load_config
from engine.errors import ConfigError
from engine.inference import Predictor
from engine.methods.prefix.method import SUPPORTED as PREFIX_TYPES
from engine.training import TrainConfig, train
from tests.conftest import NEGATIVE, POSITIVE, ROOT, make_tiny_model, write_csv

FAMILIES = ["deberta-v2", "modernbert", "qwen2", "llama", "gemma", "t5", "mt5"]
DECODERS = {"qwen2", "llama", "gemma"}
TEXTS = ["i love it", "terrible, broke in a day", "fine I guess, nothing more to say about it, really", "ok"]
OPTIONS = {"compacter": {"reduction_factor": 8}}  # a bottleneck of 4 on hidden size 32 (PHM needs n | size)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory) -> tuple[str, str]:
    base = make_tiny_model(tmp_path_factory.mktemp(request.param), request.param, initializer_range=0.2)
    return request.param, str(base)


def _methods(base: str) -> list[str]:
    """The registry's methods that fit this family; prefix tuning patches BERT-style and DeBERTa's attention,
    fusion needs trained adapters to fuse (tests/test_mixed_batches.py fuses on DeBERTa and ModernBERT)."""
    config = load_config(base)
    skip = {"fusion"} | (set() if config.model_type in PREFIX_TYPES else {"prefix"})
    return [m for m in methods.names() if architecture(config) in methods.get(m).architectures and m not in skip]


def test_every_method_trains_saves_and_predicts_the_same_in_a_fresh_process(family, tmp_path) -> None:
    model_type, base = family
    rows = [{"text": t, "label": "pos"} for t in POSITIVE] + [{"text": t, "label": "neg"} for t in NEGATIVE]
    data = write_csv(tmp_path / "d.csv", rows * 2)
    folders = {}
    for method in _methods(base):
        folders[method] = str(tmp_path / method)
        result = train(TrainConfig(data=str(data), method=method, base_model=base, output=folders[method], epochs=1,
                                   batch_size=8, learning_rate=1e-2, method_options=OPTIONS.get(method, {})))
        assert result.adapter_params > 0, method
    here = {m: Predictor().probabilities(f, TEXTS).tolist() for m, f in folders.items()}
    script = ("import json, sys\nfrom engine.inference import Predictor\nfolders = json.loads(sys.argv[1])\n"
              "print(json.dumps({m: Predictor().probabilities(f, json.loads(sys.argv[2])).tolist() "
              "for m, f in folders.items()}))")
    out = subprocess.run([sys.executable, "-c", script, json.dumps(folders), json.dumps(TEXTS)], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=300)
    there = json.loads(out.stdout.strip().splitlines()[-1])
    for method in folders:
        assert torch.allclose(torch.tensor(here[method]), torch.tensor(there[method]), atol=1e-6), method
        assert torch.tensor(here[method]).std(0).max() > 0, f"{method}: every text got the same probabilities"


def test_bottleneck_methods_are_refused_on_a_decoder_in_words(family) -> None:
    model_type, base = family
    if model_type not in DECODERS:
        pytest.skip("an encoder takes every method")
    with pytest.raises(ConfigError, match="needs an encoder base model"):
        AdapterModel(base).add_adapter("a", "pfeiffer", ["no", "yes"])


@pytest.mark.parametrize("method", ["ia3", "lora"])
def test_peft_loads_our_folder_with_the_same_probabilities(family, method, tmp_path) -> None:
    model_type, base = family
    torch.manual_seed(0)
    model = AdapterModel(base)
    model.add_adapter("a", method, ["neg", "neu", "pos"])
    with torch.no_grad():
        for p in model.trainable_parameters("a"):
            p.add_(torch.randn_like(p) * 0.3)
    model.eval()
    from engine.adapter_io import save_adapter

    save_adapter(model, "a", tmp_path, {"max_length": 128})
    tokenizer = AutoTokenizer.from_pretrained(base)
    batch = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    if model_type != "deberta-v2":
        batch.pop("token_type_ids", None)
    with torch.no_grad():
        ours = model(**batch).softmax(-1)
    net = AutoModelForSequenceClassification.from_pretrained(base, num_labels=3, pad_token_id=0)
    theirs_model = peft.PeftModel.from_pretrained(net, tmp_path).eval()
    with torch.no_grad():
        theirs = theirs_model(**batch).logits.softmax(-1)
    assert (theirs - ours).abs().max() <= 1e-5
    assert ours.std(0).max() > 1e-4  # the texts are told apart: padding did not hide them


def test_modernbert_adapters_are_berts_maths_without_the_post_residual_layer_norm(tmp_path) -> None:
    """In a pre-norm layer, x -> x + h + A(h) after attention and after the MLP (Houlsby), with A(h + x) in place
    of A(h) for Pfeiffer (which reads LN(h + x) on BERT): written out here from the layer's own parts."""
    base = make_tiny_model(tmp_path / "modernbert", "modernbert", initializer_range=0.2)
    batch = dict(AutoTokenizer.from_pretrained(base)(TEXTS[:2], padding=True, return_tensors="pt"))
    batch.pop("token_type_ids", None)
    for method, reads_sum in (("houlsby", False), ("pfeiffer", True)):
        torch.manual_seed(0)
        model = AdapterModel(str(base))
        model.add_adapter("a", method, ["no", "yes"])
        with torch.no_grad():
            for p in model.adapter_parameters("a"):
                p.add_(torch.randn_like(p) * 0.3)
        model.eval()
        layer = model.encoder.layers[1]
        seen: dict = {}
        layer.register_forward_hook(lambda m, args, kwargs, out, seen=seen: seen.update(x=args[0], kwargs=kwargs,
                                                                                         out=out), with_kwargs=True)
        with torch.no_grad():
            model(**batch)
            x, kwargs = seen["x"], seen["kwargs"]
            adapters = {slot: getattr(layer, slot).adapters["a"] for slot in ("attention_adapters", "output_adapters")
                        if "a" in getattr(layer, slot).adapters}
            h = layer.attn(layer.attn_norm(x), position_embeddings=kwargs.get("position_embeddings"),
                           attention_mask=kwargs.get("attention_mask"))[0]
            x1 = x + h + adapters["attention_adapters"](h) if method == "houlsby" else x + h
            m = layer.mlp(layer.mlp_norm(x1))
            expected = x1 + m + adapters["output_adapters"](m + x1 if reads_sum else m)
        assert torch.allclose(seen["out"], expected, atol=1e-5), method


def test_a_model_too_large_for_the_machine_is_refused_before_any_weight_is_read(tmp_path) -> None:
    """A Llama-3-70B-shaped config with no weights beside it: the run stops on the estimate, in words, before it
    would look for (or download) weights."""
    from transformers import AutoConfig

    from engine.base_models import bundled_model_dir

    folder = tmp_path / "llama-70b"
    AutoConfig.for_model("llama", hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                         num_key_value_heads=8, intermediate_size=28672, vocab_size=128256).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).write_bytes((bundled_model_dir() / name).read_bytes())
    data = write_csv(tmp_path / "d.csv", [{"text": t, "label": "pos"} for t in POSITIVE]
                     + [{"text": t, "label": "neg"} for t in NEGATIVE])
    with pytest.raises(ConfigError, match=r"does not fit: 69,\d{3}M parameters: .* GB free\. Choose a smaller model"):
        train(TrainConfig(data=str(data), method="lora", base_model=str(folder), output=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def _reference_label_scores(net, tokenizer, texts: list[str], labels: list[str]) -> torch.Tensor:
    """Each label's log-likelihood as text, the plain way: the model's loss over that label's tokens, one text and
    one label at a time."""
    scores = torch.zeros(len(texts), len(labels))
    for i, text in enumerate(texts):
        inputs = tokenizer([text], return_tensors="pt")
        for j, label in enumerate(labels):
            target = tokenizer([label], return_tensors="pt")["input_ids"]
            with torch.no_grad():
                out = net(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=target)
            scores[i, j] = -out.loss * target.shape[1]  # the loss is the mean over the label's tokens
    return scores


@pytest.mark.parametrize(("model_type", "method"), [("mt5", "ia3"), ("t5", "lora")])  # the seed's mT0 + IA3
def test_labels_as_text_train_reload_and_load_in_peft_with_the_same_probabilities(model_type, method, tmp_path):
    """The seed's way (mT0 writing the label): trained and saved as a PEFT seq2seq folder, the probabilities come
    back the same in a fresh process, and equal the softmax of each label's likelihood under PEFT's model."""
    from transformers import AutoModelForSeq2SeqLM

    base = make_tiny_model(tmp_path / model_type, model_type, initializer_range=0.2)
    rows = [{"text": t, "label": "positive"} for t in POSITIVE] + [{"text": t, "label": "negative"} for t in NEGATIVE]
    out = tmp_path / "adapter"
    train(TrainConfig(data=str(write_csv(tmp_path / "d.csv", rows * 2)), method=method, base_model=str(base),
                      output=str(out), epochs=2, batch_size=8, learning_rate=3e-2, labels_as_text=True))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_2_SEQ_LM" and not config["modules_to_save"]
    ours = Predictor().probabilities(out, TEXTS, calibrated=False)
    script = ("import json, sys\nfrom engine.inference import Predictor\n"
              "print(json.dumps(Predictor().probabilities(sys.argv[1], json.loads(sys.argv[2]), "
              "calibrated=False).tolist()))")
    fresh = subprocess.run([sys.executable, "-c", script, str(out), json.dumps(TEXTS)], cwd=ROOT, check=True,
                           capture_output=True, text=True, timeout=300).stdout.strip().splitlines()[-1]
    assert torch.allclose(torch.tensor(json.loads(fresh)), ours, atol=1e-6)
    net = peft.PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base), out).eval()
    labels = Predictor().labels(out)
    theirs = _reference_label_scores(net, AutoTokenizer.from_pretrained(base), TEXTS, labels).softmax(-1)
    assert (theirs - ours).abs().max() <= 1e-5
    assert ours.std(0).max() > 1e-3  # the texts are told apart


def test_labels_as_text_need_an_encoder_decoder(family) -> None:
    model_type, base = family
    if model_type in ("t5", "mt5"):
        pytest.skip("an encoder-decoder writes labels as text")
    with pytest.raises(ConfigError, match="Labels as text need an encoder-decoder base model"):
        AdapterModel(base, labels_as_text=True)


@pytest.mark.parametrize(("model_type", "method", "as_text"), [
    ("deberta-v2", "pfeiffer", False), ("qwen2", "lora", False), ("t5", "ia3", True)])
def test_onnx_export_of_each_family_matches_torch(model_type, method, as_text, tmp_path) -> None:
    """One graph per family (a T5 writing labels as text included: encoder, then the decoder over every label),
    checked against PyTorch at export as for the bundled model."""
    from engine.export import TOLERANCE, export_onnx

    base = make_tiny_model(tmp_path / model_type, model_type, initializer_range=0.2)
    rows = [{"text": t, "label": "positive"} for t in POSITIVE] + [{"text": t, "label": "negative"} for t in NEGATIVE]
    out = tmp_path / "adapter"
    train(TrainConfig(data=str(write_csv(tmp_path / "d.csv", rows * 2)), method=method, base_model=str(base),
                      output=str(out), epochs=1, batch_size=8, labels_as_text=as_text))
    report = export_onnx(out, tmp_path / "onnx").as_dict()
    assert report["max_abs_diff"] <= TOLERANCE and report["rows_checked"] > 0
