"""IA3 settings, written and read as PEFT's `adapter_config.json` (peft_type "IA3") without importing PEFT.

PEFT is not needed at run time: this small dataclass carries the few fields AdapterLab uses and writes every
field PEFT's `IA3Config.save_pretrained` writes, so `PeftModel.from_pretrained` loads our folders as its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError
from engine.heads import head_modules

CONFIG_NAME = "adapter_config.json"

# (target modules, feed-forward modules) per model type. bert, roberta, deberta and deberta-v2 are PEFT's
# TRANSFORMERS_MODELS_TO_IA3_{TARGET,FEEDFORWARD}_MODULES_MAPPING entries (peft 0.17-0.21); PEFT has none for
# electra, xlm-roberta and distilbert, whose module names follow each architecture (same roles as BERT's), nor
# for modernbert, whose attention computes queries, keys and values in one linear (Wqkv): IA3 scales all three
# there, and the feed-forward output's input (mlp.Wo) as on BERT.
DEFAULT_TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "bert": (["key", "value", "output.dense"], ["output.dense"]),
    "roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "deberta": (["in_proj", "output.dense"], ["output.dense"]),
    "deberta-v2": (["key_proj", "value_proj", "output.dense"], ["output.dense"]),
    "electra": (["key", "value", "output.dense"], ["output.dense"]),
    "xlm-roberta": (["key", "value", "output.dense"], ["output.dense"]),
    "distilbert": (["k_lin", "v_lin", "lin2"], ["lin2"]),
    "modernbert": (["Wqkv", "mlp.Wo"], ["mlp.Wo"]),
    # T5 and mT5 (mT0), and decoder LLMs, as PEFT's mapping has them (Llama scales keys, the others queries)
    "t5": (["k", "v", "wo"], ["wo"]),
    "mt5": (["k", "v", "wi_1"], []),
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    **{t: (["q_proj", "v_proj", "down_proj"], ["down_proj"]) for t in ("qwen2", "qwen3", "gemma", "gemma2")},
}
@dataclass
class IA3Config:
    """The IA3 settings PEFT's IA3Config holds for a sequence classifier over nn.Linear layers.

    Module names match as PEFT matches them (see `is_target` / `is_feedforward`), so the same modules are scaled
    and the parameter counts and saved keys are PEFT's.
    """

    target_modules: list[str]
    feedforward_modules: list[str] = field(default_factory=list)
    modules_to_save: list[str] = field(default_factory=lambda: ["classifier"])
    base_model_name_or_path: str | None = None
    task_type: str = "SEQ_CLS"
    revision: str | None = None

    def __post_init__(self) -> None:
        if not self.target_modules:
            raise ConfigError("IA3 needs at least one target module.")
        if not set(self.feedforward_modules) <= set(self.target_modules):
            raise ConfigError("IA3 feed-forward modules must be a subset of the target modules.")

    def is_target(self, path: str) -> bool:
        """PEFT's `check_target_module_exists` for a list: the whole path, or a suffix after a dot. The head
        modules (`modules_to_save`) are never targets."""
        if any(f".{m}." in f".{path}." for m in self.modules_to_save):
            return False
        return any(path == t or path.endswith(f".{t}") for t in self.target_modules)

    def is_feedforward(self, path: str) -> bool:
        """PEFT's `_check_target_module_feedforward`: a plain string suffix, so BERT's `output.dense` also
        catches `attention.output.dense` (kept, as PEFT does it, so the vectors and counts are PEFT's)."""
        return any(path.endswith(f) for f in self.feedforward_modules)

    def to_peft_dict(self) -> dict:
        """The fields `PeftModel.save_pretrained` writes for this IA3 config. peft_version stays null: PEFT
        fills in its own version when it loads the file."""
        return {
            "auto_mapping": None,
            "base_model_name_or_path": self.base_model_name_or_path,
            "exclude_modules": None,
            "fan_in_fan_out": False,
            "feedforward_modules": list(self.feedforward_modules),
            "inference_mode": True,
            "init_ia3_weights": True,
            "modules_to_save": list(self.modules_to_save),
            "peft_type": "IA3",
            "peft_version": None,
            "revision": self.revision,
            "target_modules": list(self.target_modules),
            "task_type": self.task_type,
        }

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write `adapter_config.json` the way PEFT does (sorted keys, indent 2)."""
        path = Path(folder) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_peft_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def from_peft_dict(cls, data: dict) -> IA3Config:
        """Read PEFT's IA3 config fields; refuse the options this implementation does not do."""
        if data.get("peft_type") != "IA3":
            raise ConfigError(f"Not an IA3 adapter config (peft_type {data.get('peft_type')!r}).")
        targets, feedforward = data.get("target_modules"), data.get("feedforward_modules") or []
        if not isinstance(targets, list) or not isinstance(feedforward, list):
            raise ConfigError("IA3 target and feed-forward modules given as a regular expression are not supported: "
                              "list the module names.")
        if data.get("fan_in_fan_out") or data.get("exclude_modules"):
            raise ConfigError("IA3 configs with fan_in_fan_out or exclude_modules are not supported.")
        return cls(target_modules=list(targets), feedforward_modules=list(feedforward),
                   modules_to_save=list(dict.fromkeys(data.get("modules_to_save") or (
                       [] if data.get("task_type") == "SEQ_2_SEQ_LM" else ["classifier"]))),
                   base_model_name_or_path=data.get("base_model_name_or_path"),
                   task_type=data.get("task_type") or "SEQ_CLS", revision=data.get("revision"))

    @classmethod
    def from_peft_json(cls, path: str | Path) -> IA3Config:
        """Read `adapter_config.json` (a folder or the file itself)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        return cls.from_peft_dict(json.loads(path.read_text()))


def ia3_config(
    model_type: str,
    base_model: str,
    target_modules: list[str] | None = None,
    feedforward_modules: list[str] | None = None,
    task_type: str = "SEQ_CLS",
    head: list[str] | None = None,
) -> IA3Config:
    """The IA3Config AdapterLab trains with and saves (loadable by `PeftModel.from_pretrained`)."""
    default_targets, default_ff = DEFAULT_TARGETS.get(model_type, (None, None))
    targets = target_modules or default_targets
    feedforward = feedforward_modules if feedforward_modules is not None else default_ff
    if not targets:
        raise ConfigError(f"IA3 has no default target modules for {model_type}: pass them explicitly.")
    return IA3Config(target_modules=list(targets), feedforward_modules=list(feedforward or []),
                     modules_to_save=head_modules(model_type) if head is None else list(head),
                     base_model_name_or_path=base_model, task_type=task_type)
