"""Training methods: one folder each (config, layer, model, and `method.py` with its registration), as in PEFT's
`tuners/`, and the registry the rest of AdapterLab reads them from. Nothing outside a method's folder names it.

Adding a method: a folder with a `Method` subclass (see engine/methods/base.py) and one line in `_builtin()`.
"""

from __future__ import annotations

from engine.errors import ConfigError
from engine.methods.base import Method
from engine.options import OptionSpec, option_fields

REGISTRY: dict[str, Method] = {}
GROUPS = ("Bottleneck adapters", "Low-rank and scaling", "Prompt-based", "Full fine-tuning")


def register(method: Method) -> Method:
    if method.group not in GROUPS:
        raise ValueError(f"method group {method.group!r} is not one of {GROUPS}")
    REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    """The registered method `name`, or a ConfigError listing the ones there are."""
    if name not in REGISTRY:
        raise ConfigError(f"Unknown method '{name}': choose one of {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def names() -> list[str]:
    return list(REGISTRY)


def label(name: str | None) -> str:
    """The method's name in the page ('Pfeiffer', 'LoRA'); an unknown one as it is."""
    return REGISTRY[name].label if name in REGISTRY else str(name or "?")


def option_rows(method: str | None, options: dict | None) -> list[tuple[str, object]]:
    """A method's options as (words in the page, value), in the order its Options declare them."""
    if method not in REGISTRY or not options:
        return []
    return [(spec.label, options[f.name]) for f, spec in option_fields(REGISTRY[method].Options) if f.name in options]


def all_options() -> dict[str, OptionSpec]:
    """Every option name any method reads, with the first method's words for it (the CLI's flags)."""
    out: dict[str, OptionSpec] = {}
    for method in REGISTRY.values():
        for f, spec in option_fields(method.Options):
            out.setdefault(f.name, spec)
    return out


def _builtin() -> None:
    from engine.methods.bottleneck.method import Compacter, Houlsby, Parallel, Pfeiffer
    from engine.methods.full.method import FullFineTuning
    from engine.methods.fusion.method import Fusion
    from engine.methods.ia3.method import IA3
    from engine.methods.lora.method import LoRA
    from engine.methods.prefix.method import PrefixTuning
    from engine.methods.prompt.method import PromptTuning

    for method in (Houlsby(), Pfeiffer(), Parallel(), Compacter(), Fusion(), LoRA(), IA3(), PrefixTuning(),
                   PromptTuning(), FullFineTuning()):
        register(method)


_builtin()
