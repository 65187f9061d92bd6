"""engine/bert_files.py reads a BERT checkpoint's config and tokenizer as transformers does, without importing it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, make_tiny_model
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoTokenizer

from engine import bert_files
from engine.base_models import load_config, load_tokenizer

TEXTS = ["A fine film.", "Crème brûlée, naïve café", "我爱北京天安门", "emoji 🙂 and\ttabs\nnew lines", "",
         "   ", "literal [SEP] and [MASK] tokens", "unaffable antidisestablishmentarianism " * 3,
         "x" * 120 + " a word far longer than a hundred characters", "control\x00char\u200bs"]
PAIRS = ["a second text", "", "one two three four five six seven eight nine ten", "naïve", "天安门", "[CLS]",
         "b", "c " * 40, "d", "e"]
SETTINGS = {"as saved": {}, "cased": {"do_lower_case": False}, "accents stripped": {"strip_accents": True},
            "no chinese split": {"tokenize_chinese_chars": False}}


@pytest.fixture(scope="module", params=list(SETTINGS))
def tokenizer_folder(request, bundled_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(bundled_model / name, folder / name)
    settings = json.loads((folder / "tokenizer_config.json").read_text()) | SETTINGS[request.param]
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    return folder


def _theirs(folder):
    return AutoTokenizer.from_pretrained(str(folder))


def test_tokens_equal_transformers(tokenizer_folder):
    ours, theirs = bert_files.read_tokenizer(tokenizer_folder), _theirs(tokenizer_folder)
    assert ours is not None
    keys = ["input_ids", "token_type_ids", "attention_mask", "offset_mapping", "special_tokens_mask"]
    options = {"return_offsets_mapping": True, "return_special_tokens_mask": True}
    for max_length in (None, 8, 64):
        kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
        for pairs in (None, PAIRS):
            a, b = ours(TEXTS, pairs, **kwargs, **options), theirs(TEXTS, pairs, **kwargs, **options)
            assert {k: a[k] for k in keys} == {k: [list(map(tuple, r)) if k == "offset_mapping" else r for r in b[k]]
                                               for k in keys}, (max_length, pairs is not None)
        for text, pair in zip(TEXTS, PAIRS, strict=True):
            a, b = ours(text, pair, **kwargs), theirs(text, pair, **kwargs)
            assert {k: a[k] for k in keys[:3]} == {k: b[k] for k in keys[:3]}
    assert ours(TEXTS, add_special_tokens=False)["input_ids"] == theirs(TEXTS, add_special_tokens=False)["input_ids"]
    for pairs in (None, PAIRS):
        a = ours(TEXTS, pairs, truncation=True, max_length=12, padding=True, return_tensors="pt")
        b = theirs(TEXTS, pairs, truncation=True, max_length=12, padding=True, return_tensors="pt")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for text, pair in zip(TEXTS, PAIRS, strict=True):
        a, b = ours(text, pair, return_offsets_mapping=True), theirs(text, pair, return_offsets_mapping=True)
        assert (a.sequence_ids(), a.word_ids()) == (b.sequence_ids(), b.word_ids())
    ids = ours(TEXTS[1])["input_ids"]
    assert ours.convert_ids_to_tokens(ids) == theirs.convert_ids_to_tokens(ids)
    tokens = ["[CLS]", "film", "##s", "[PAD]"]
    assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("[SEP]") == theirs.convert_tokens_to_ids("[SEP]")
    assert (ours.pad_token_id, ours.eos_token_id) == (theirs.pad_token_id, theirs.eos_token_id)
    assert ours.model_input_names == theirs.model_input_names


def test_saved_tokenizer_reads_the_same_in_transformers_and_tokenizers(bundled_model, tmp_path):
    ours = bert_files.read_tokenizer(bundled_model)
    ours.save_pretrained(str(tmp_path / "saved"))
    expected = ours(TEXTS, PAIRS, truncation=True, max_length=16)["input_ids"]
    assert _theirs(tmp_path / "saved")(TEXTS, PAIRS, truncation=True, max_length=16)["input_ids"] == expected
    plain = Tokenizer.from_file(str(tmp_path / "saved" / "tokenizer.json"))  # as an exported folder's predict.py
    plain.enable_truncation(16)
    assert [e.ids for e in plain.encode_batch(list(zip(TEXTS, PAIRS, strict=True)))] == expected


def test_each_truncation_length_has_its_own_backend(bundled_model):
    """Threads predicting with different max lengths at once must not truncate each other's texts."""
    ours = bert_files.read_tokenizer(bundled_model)
    long = "word " * 50
    assert len(ours(long, truncation=True, max_length=8)["input_ids"]) == 8
    assert len(ours(long, truncation=True, max_length=32)["input_ids"]) == 32
    assert len(ours(long)["input_ids"]) == 52
    assert len(ours(long, truncation=True)["input_ids"]) == 52  # model_max_length 512


@pytest.mark.parametrize("model", ["bundled", "tiny"])
def test_config_equals_transformers(model, bundled_model, tiny_bert):
    folder = bundled_model if model == "bundled" else tiny_bert
    ours, theirs = bert_files.read_config(folder), AutoConfig.from_pretrained(str(folder))
    bookkeeping = {"architectures", "_name_or_path", "transformers_version", "dtype"}  # not read by the engine
    for key in {*bert_files.DEFAULTS, *json.loads((folder / "config.json").read_text())} - bookkeeping:
        if hasattr(theirs, key):
            assert getattr(ours, key) == getattr(theirs, key), key
    assert ours.model_type == theirs.model_type == "bert"
    labelled = bert_files.BertConfig(id2label={"0": "a", "1": "b", "2": "c"})
    assert labelled.num_labels == 3


def test_engine_loads_bert_without_transformers_and_others_with_it(bundled_model, tmp_path):
    assert isinstance(load_config(str(bundled_model)), bert_files.BertConfig)
    assert isinstance(load_tokenizer(str(bundled_model)), bert_files.BertTokenizer)
    distilbert = make_tiny_model(tmp_path / "distilbert", "distilbert")
    assert not isinstance(load_config(str(distilbert)), bert_files.BertConfig)
    assert not isinstance(load_tokenizer(str(distilbert)), bert_files.BertTokenizer)
    other = make_tiny_model(tmp_path / "other-tokenizer")
    settings = json.loads((other / "tokenizer_config.json").read_text()) | {"tokenizer_class": "MPNetTokenizer"}
    (other / "tokenizer_config.json").write_text(json.dumps(settings))
    assert not isinstance(load_tokenizer(str(other)), bert_files.BertTokenizer)


def test_training_a_bert_checkpoint_never_imports_transformers_or_sympy(tmp_path):
    """transformers' import is 0.65-1.0 s of every training process, sympy's (through torch's reference ops, which
    moving a module off the meta device imports) 0.4 s (docs/benchmarks.md)."""
    rows = "\n".join(f"{'good' if i % 2 else 'bad'} film {i},{'pos' if i % 2 else 'neg'}" for i in range(40))
    (tmp_path / "t.csv").write_text("text,label\n" + rows + "\n")
    code = ("import sys; from engine.training import TrainConfig, train; "
            f"r = train(TrainConfig(data={str(tmp_path / 't.csv')!r}, method=sys.argv[1], epochs=1, "
            f"output={str(tmp_path / 'out')!r})); "
            "print(sorted(m for m in sys.modules if m.startswith(('transformers', 'sympy'))))")
    for method in ("pfeiffer", "houlsby", "ia3"):
        out = subprocess.run([sys.executable, "-c", code, method], cwd=ROOT, capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip().splitlines()[-1] == "[]", (method, out.stderr[-2000:])
