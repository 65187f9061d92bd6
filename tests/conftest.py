"""Shared fixtures: tiny models of each supported architecture, built in the test, and small CSVs."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests train in fp32 whatever the CPU, with no precision probe per model shape (half a minute each): their
# results do not depend on the machine. tests/test_precision.py runs the probe and trains in bf16 on purpose,
# with a cache of its own; one probe cache for the whole run otherwise.
os.environ.setdefault("ADAPTERLAB_PRECISION", "fp32")
os.environ.setdefault("ADAPTERLAB_PRECISION_CACHE", os.path.join(tempfile.mkdtemp(prefix="adapterlab-"),
                                                                 "precision.json"))

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def make_tiny_model(folder: Path, model_type: str = "bert", **config: object) -> Path:
    """A randomly initialised 2-layer model (hidden 32) with the bundled WordPiece tokenizer; `config` overrides
    its settings (e.g. a larger initializer_range, for hidden states that depend more on the words)."""
    import torch
    from transformers import AutoConfig, AutoModel

    from engine.base_models import bundled_model_dir

    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
             "vocab_size": 30522, "max_position_embeddings": 128, "pad_token_id": 0}
    if model_type == "distilbert":
        sizes = {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64, "vocab_size": 30522,
                 "max_position_embeddings": 128, "pad_token_id": 0}
    if model_type == "electra":
        sizes["embedding_size"] = 32
    if model_type == "modernbert":  # global attention in every layer; the bundled vocabulary's special tokens
        sizes.update(global_attn_every_n_layers=1, local_attention=16, bos_token_id=101, eos_token_id=102,
                     cls_token_id=101, sep_token_id=102)
    if model_type == "deberta-v2":  # as DeBERTa-v3: disentangled relative attention, shared keys, no absolute positions
        sizes.update(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=16, share_att_key=True,
                     norm_rel_ebd="layer_norm", position_biased_input=False, max_relative_positions=-1)
    if model_type in ("t5", "mt5"):  # T5's own size names; the bundled vocabulary's [SEP] ends a text, as </s>
        sizes = {"d_model": 32, "num_layers": 2, "num_heads": 4, "d_kv": 8, "d_ff": 64, "vocab_size": 30522,
                 "pad_token_id": 0, "eos_token_id": 102, "decoder_start_token_id": 0}
        if model_type == "mt5":
            sizes["feed_forward_proj"] = "gated-gelu"
    if model_type in ("qwen2", "llama", "gemma"):  # grouped-query attention, as the real ones
        sizes.update(num_key_value_heads=2, head_dim=8, tie_word_embeddings=False)
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.for_model(model_type, **{**sizes, **config})).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(bundled_model_dir() / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    from engine.base_models import bundled_model_dir

    return bundled_model_dir()


POSITIVE = ["great product, works well", "i love it", "excellent service and fast", "really happy with this",
            "wonderful, would buy again", "fantastic quality", "very good value", "the best purchase this year"]
NEGATIVE = ["terrible, broke in a day", "i hate it", "awful service and slow", "really unhappy with this",
            "horrible, never again", "poor quality", "a waste of money", "the worst purchase this year"]


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None, **kwargs) -> Path:
    with open(path, "w", newline="", encoding=kwargs.pop("encoding", "utf-8")) as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]), **kwargs)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture()
def sentiment_csv(tmp_path) -> Path:
    """48 rows, two string labels."""
    rows = [{"text": t, "label": "pos"} for t in POSITIVE * 3] + [{"text": t, "label": "neg"} for t in NEGATIVE * 3]
    return write_csv(tmp_path / "sentiment.csv", rows)
