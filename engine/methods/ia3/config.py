"""IA3 settings as a PEFT `IA3Config`: PEFT's default target modules, with defaults for the encoders it lacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import ConfigError

if TYPE_CHECKING:
    from peft import IA3Config

# PEFT has no IA3 defaults for these; the module names follow each architecture (same roles as BERT's).
_EXTRA_TARGETS = {
    "electra": (["key", "value", "output.dense"], ["output.dense"]),
    "xlm-roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
}
# The sequence-classification head modules each architecture trains and saves with the adapter.
HEAD_MODULES = {"distilbert": ["pre_classifier", "classifier"]}


def head_modules(model_type: str) -> list[str]:
    return HEAD_MODULES.get(model_type, ["classifier"])


def ia3_config(
    model_type: str,
    base_model: str,
    target_modules: list[str] | None = None,
    feedforward_modules: list[str] | None = None,
) -> IA3Config:
    """The IA3Config AdapterLab trains with and saves (loadable by `PeftModel.from_pretrained`)."""
    from peft import IA3Config
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as PEFT_FEEDFORWARD
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as PEFT_TARGETS

    default_targets, default_ff = _EXTRA_TARGETS.get(
        model_type, (PEFT_TARGETS.get(model_type), PEFT_FEEDFORWARD.get(model_type))
    )
    targets = target_modules or default_targets
    feedforward = feedforward_modules if feedforward_modules is not None else default_ff
    if not targets:
        raise ConfigError(f"IA3 has no default target modules for {model_type}: pass them explicitly.")
    if not set(feedforward or []) <= set(targets):
        raise ConfigError("IA3 feed-forward modules must be a subset of the target modules.")
    return IA3Config(
        task_type="SEQ_CLS",
        target_modules=list(targets),
        feedforward_modules=list(feedforward or []),
        modules_to_save=head_modules(model_type),
        base_model_name_or_path=base_model,
    )
