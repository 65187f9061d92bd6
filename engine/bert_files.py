"""A BERT checkpoint's config and tokenizer read from its folder without importing transformers.

Importing transformers costs 0.65-1.0 s in every process (its package scans ~1,700 model files the first time any
config or tokenizer class is imported; docs/benchmarks.md), a twentieth of a short training job. For the BERT
checkpoints engine/bert_model.py computes, `BertConfig` holds config.json over transformers' BertConfig defaults
and `BertTokenizer` builds the tokenizer transformers 5's `BertTokenizer` builds (WordPiece over the checkpoint's
vocabulary, the normaliser from tokenizer_config.json, [CLS] A [SEP] B [SEP]); tests/test_bert_files.py holds
both equal to transformers' on the calls the engine makes. Any other checkpoint loads through transformers.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {  # transformers' BertConfig and PretrainedConfig defaults, for keys a file leaves out
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
    "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0, "bos_token_id": None,
    "eos_token_id": None, "classifier_dropout": None, "is_decoder": False, "add_cross_attention": False,
    "is_encoder_decoder": False, "chunk_size_feed_forward": 0, "num_labels": 2,
}
TOKENIZER_CLASSES = ("BertTokenizer", "BertTokenizerFast")
SPECIAL_TOKENS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "mask_token": "[MASK]"}


class BertConfig:
    """config.json's values as attributes, over BertConfig's defaults; `num_labels` is set per task model."""

    model_type = "bert"

    def __init__(self, **values: Any) -> None:
        values.pop("model_type", None)
        id2label = values.pop("id2label", None)
        self.__dict__.update(DEFAULTS)
        if id2label:
            self.num_labels = len(id2label)
        self.__dict__.update(values)

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": self.model_type, **self.__dict__}

    def to_json_string(self, use_diff: bool = False) -> str:
        """Every value (this config keeps no record of which were the defaults)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def read_config(folder: Path) -> BertConfig | None:
    """The folder's config.json as a `BertConfig`, or None if it is not a BERT model's."""
    values = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return BertConfig(**values) if values.get("model_type") == "bert" else None


def _settings(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _token(value: Any) -> str:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken's dict."""
    return value["content"] if isinstance(value, dict) else str(value)


class Encoded(dict):
    """The tokenizer's output by key, as transformers' BatchEncoding; each row's sequence and word of each token."""

    def __init__(self, values: dict, encodings: list) -> None:
        super().__init__(values)
        self.encodings = encodings

    def sequence_ids(self, row: int = 0) -> list[int | None]:
        return self.encodings[row].sequence_ids

    def word_ids(self, row: int = 0) -> list[int | None]:
        return self.encodings[row].word_ids


class BertTokenizer:
    """What transformers 5's BertTokenizer returns for the calls the engine makes, from the tokenizers library."""

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    eos_token_id = None

    def __init__(self, folder: Path, saved: dict[str, Any], settings: dict[str, Any]) -> None:
        """`saved`: the folder's tokenizer.json, read; `settings`: its tokenizer_config.json."""
        from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers, processors
        from tokenizers.models import WordPiece

        self.folder = folder
        self.model_max_length = settings.get("model_max_length")
        special = {key: _token(settings.get(key, default)) for key, default in SPECIAL_TOKENS.items()}
        vocab = saved["model"]["vocab"]
        tokenizer = Tokenizer(WordPiece(vocab, unk_token=special["unk_token"]))
        tokenizer.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
            strip_accents=settings.get("strip_accents"), lowercase=settings.get("do_lower_case", True))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cls, sep = special["cls_token"], special["sep_token"]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, vocab.get(cls, 2)), (sep, vocab.get(sep, 3))])
        for added in saved.get("added_tokens", []):
            token = AddedToken(added["content"], single_word=added["single_word"], lstrip=added["lstrip"],
                               rstrip=added["rstrip"], normalized=added["normalized"], special=added["special"])
            (tokenizer.add_special_tokens if added["special"] else tokenizer.add_tokens)([token])
        tokenizer.add_special_tokens([t for t in special.values() if tokenizer.token_to_id(t) is None])
        self._json = tokenizer.to_str()
        self._backends: dict[tuple[int | None, bool], Tokenizer] = {(None, False): tokenizer}
        self._lock = threading.Lock()
        self.pad_token = special["pad_token"]
        self.pad_token_id = tokenizer.token_to_id(self.pad_token)

    def _backend(self, max_length: int | None, padded: bool):
        """One backend per truncation length and padding: both are its state, and threads may ask for different
        ones at once."""
        with self._lock:
            if (max_length, padded) not in self._backends:
                from tokenizers import Tokenizer

                backend = Tokenizer.from_str(self._json)
                if max_length:
                    backend.enable_truncation(max_length)
                if padded:
                    backend.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token)
                self._backends[max_length, padded] = backend
            return self._backends[max_length, padded]

    def __call__(self, text: str | list[str], text_pair: str | list[str] | None = None, truncation: bool = False,
                 max_length: int | None = None, padding: bool | str = False, add_special_tokens: bool = True,
                 return_offsets_mapping: bool = False, return_special_tokens_mask: bool = False,
                 return_tensors: str | None = None) -> Encoded:
        """input_ids, token_type_ids and attention_mask (and offset_mapping, special_tokens_mask if asked) of one
        text (lists of ints) or of a list of texts (lists of such lists); pairs truncated longest first; `padding`
        to the longest row; `return_tensors="pt"` for PyTorch tensors."""
        backend = self._backend((max_length or self.model_max_length) if truncation else None,
                                padding in (True, "longest"))
        single = isinstance(text, str)
        if single:  # as transformers: one text with an empty pair is a text alone
            texts, pairs = [text], [text_pair] if text_pair else None
        else:
            texts, pairs = list(text), None if text_pair is None else list(text_pair)
        inputs = texts if pairs is None else list(zip(texts, pairs, strict=True))
        encodings = backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        out = {"input_ids": [e.ids for e in encodings], "token_type_ids": [e.type_ids for e in encodings],
               "attention_mask": [e.attention_mask for e in encodings]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encodings]
        if return_special_tokens_mask:
            out["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if return_tensors == "pt":
            import torch

            return Encoded({k: torch.tensor(v) for k, v in out.items()}, encodings)
        return Encoded({k: v[0] for k, v in out.items()} if single else out, encodings)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        backend = self._backends[None, False]
        return [backend.id_to_token(i) for i in ids]

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | None | list[int | None]:
        backend = self._backends[None, False]
        return backend.token_to_id(tokens) if isinstance(tokens, str) else [backend.token_to_id(t) for t in tokens]

    def save_pretrained(self, folder: str) -> None:
        """The checkpoint's tokenizer files, with tokenizer.json as this tokenizer computes (no preset padding or
        truncation), so the tokenizers library alone reads it the same way."""
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            if (self.folder / name).is_file():
                shutil.copyfile(self.folder / name, target / name)
        (target / "tokenizer.json").write_text(self._json, encoding="utf-8")


def read_tokenizer(folder: Path) -> BertTokenizer | None:
    """The folder's tokenizer if it is a BERT WordPiece tokenizer with a tokenizer.json, else None."""
    if not (folder / "tokenizer.json").is_file():
        return None
    settings = _settings(folder)
    if settings.get("tokenizer_class", "BertTokenizer") not in TOKENIZER_CLASSES:
        return None
    saved = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    return BertTokenizer(folder, saved, settings) if saved.get("model", {}).get("type") == "WordPiece" else None
