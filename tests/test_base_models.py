"""Base models: the bundled default, local folders, and a clear error for what cannot be had offline."""

from __future__ import annotations

import pytest
from transformers import GPT2Config

from engine.base_models import DEFAULT_BASE_MODEL, bundled_model_dir, display_name, load_config, resolve_base_model
from engine.errors import ConfigError


def test_default_is_the_bundled_folder() -> None:
    for alias in (None, "", DEFAULT_BASE_MODEL, "all-MiniLM-L6-v2"):
        assert resolve_base_model(alias) == str(bundled_model_dir())
    assert display_name(str(bundled_model_dir())) == DEFAULT_BASE_MODEL
    config = load_config(str(bundled_model_dir()))
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("bert", 384, 6)


def test_local_folder(tiny_bert) -> None:
    assert resolve_base_model(str(tiny_bert)) == str(tiny_bert.resolve())
    assert load_config(str(tiny_bert)).hidden_size == 32


@pytest.mark.parametrize("hub_id", ["some-org/some-model", "Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-1B"])
def test_hub_id_without_network_is_one_clear_line(hub_id) -> None:
    """Dots in a hub id (versions) do not make it a missing folder."""
    with pytest.raises(ConfigError, match=f"'{hub_id}' is not available offline") as info:
        load_config(resolve_base_model(hub_id))
    assert "\n" not in str(info.value)


def test_folder_problems(tmp_path) -> None:
    with pytest.raises(ConfigError, match="has no config.json"):
        resolve_base_model(str(tmp_path))
    GPT2Config(n_layer=1).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ConfigError, match="is a gpt2 model; AdapterLab supports the encoders bert"):
        load_config(resolve_base_model(str(tmp_path / "gpt2")))
