"""One frozen base model with any number of named adapters and heads over it; one is active at a time.

Training uses it with a single adapter; the playground and batch prediction load many and switch between
them without reloading the base model.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field, is_dataclass
from typing import Any

import torch
from torch import nn

from engine import bert_model
from engine.base_models import (
    display_name,
    from_pretrained,
    load_config,
    load_tokenizer,
    pad_token_id,
    resolve_base_model,
)
from engine.batching import Batcher
from engine.errors import ConfigError
from engine.first_token import set_first_token_only
from engine.heads import RowHeads, head_modules
from engine.labels_as_text import check as labels_as_text_fits
from engine.labels_as_text import label_scores, label_token_ids
from engine.methods import get as get_method
from engine.methods.base import Method
from engine.methods.bottleneck import model as bn


@functools.cache
def _takes_token_types(encoder: type) -> bool:
    """Read from the class once: inspecting the signature took ~1 ms, a tenth of a one-text prediction."""
    return "token_type_ids" in inspect.signature(encoder.forward).parameters


@dataclass
class AdapterInfo:
    """What the model knows about one loaded adapter: its method, labels, options and the method's own config."""

    name: str
    method: str
    labels: list[str]
    options: Any  # the method's Options dataclass
    config: Any = None  # what the method built it from (e.g. BottleneckConfig, IA3Config)
    meta: dict = field(default_factory=dict)


class AdapterModel(nn.Module):
    def __init__(self, base_model: str | None = None, mmap: bool = True, labels_as_text: bool = False) -> None:
        """`mmap=False` reads the weights into memory instead of mapping the file: for bf16 training, whose
        re-stored weights can then free their fp32 originals (30 MB less at the peak on the bundled model).
        `labels_as_text`: an encoder-decoder writes each label as text (engine/labels_as_text.py) instead of a
        classification head reading its decoder."""
        super().__init__()
        self.base_model_path = resolve_base_model(base_model)
        self.base_model_name = display_name(self.base_model_path)
        self.config = load_config(self.base_model_path)
        self.tokenizer = load_tokenizer(self.base_model_path)
        self.labels_as_text = labels_as_text
        if labels_as_text:
            labels_as_text_fits(self.config)
        self.backbone = None if labels_as_text else bert_model.load(self.base_model_path, self.config)
        if self.backbone is None:
            self.backbone = self._from_transformers(mmap)
        # a decoder LLM's classifier reads the last token that is not this one
        self.backbone.config.pad_token_id = pad_token_id(self.tokenizer)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        set_first_token_only(self.encoder)
        bn.adapter_sites(self.encoder)  # the residual slots (a plain forward is unchanged; DistilBERT's fast path)
        self.base_dropout = False  # see train()
        self.heads = nn.ModuleDict()
        self.adapters: dict[str, AdapterInfo] = {}
        self.active: str | None = None
        self._label_ids: dict[tuple[str, ...], torch.Tensor] = {}  # labels -> their tokens (labels as text)

    def _from_transformers(self, mmap: bool) -> nn.Module:
        """The task model as transformers loads it (every architecture; BERT checkpoints mostly load without its
        modelling code: engine/bert_model.py)."""
        from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification

        task_model, sizes = ((AutoModelForSeq2SeqLM, {}) if self.labels_as_text
                             else (AutoModelForSequenceClassification, {"num_labels": 2}))
        return from_pretrained(task_model, self.base_model_path, disable_mmap=not mmap, **sizes)

    @property
    def task_type(self) -> str:
        """PEFT's name for what the task model does, written in PEFT-format folders."""
        return "SEQ_2_SEQ_LM" if self.labels_as_text else "SEQ_CLS"

    def head_module_names(self) -> list[str]:
        """The architecture's head modules each adapter trains its own copy of (none when labels are text: the
        decoder's own output layer writes them)."""
        return [] if self.labels_as_text else head_modules(self.config.model_type)

    @property
    def _projections_see_all_rows(self) -> bool:
        """DeBERTa-v2/v3 also runs its query and key projections over the relative-position embeddings, one set
        for the whole batch (share_att_key): LoRA or IA3 there cannot act on some rows only, so in a mixed batch
        their rows run apart."""
        return (self.config.model_type == "deberta-v2" and bool(getattr(self.config, "share_att_key", False))
                and bool(getattr(self.config, "relative_attention", False)))

    def task_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task model's logits for the active adapter: its classification head's, or each label's
        log-likelihood as text."""
        if not self.labels_as_text:
            return self.backbone(**batch).logits
        labels = self.adapters[self.active].labels
        if tuple(labels) not in self._label_ids:
            self._label_ids[tuple(labels)] = label_token_ids(self.tokenizer, labels)
        return label_scores(self.backbone, batch, self._label_ids[tuple(labels)])

    @property
    def encoder(self) -> nn.Module:
        return self.backbone.base_model

    @property
    def model_prefix(self) -> str:
        return self.backbone.base_model_prefix

    @property
    def accepts_token_types(self) -> bool:
        """DistilBERT's encoder takes no token_type_ids; BERT, RoBERTa, ELECTRA and XLM-R do."""
        return _takes_token_types(type(self.encoder))

    def batcher(self, max_length: int, bf16: bool | None = None) -> Batcher:
        """A batcher for this model's tokenizer and device (bf16 autocast: see `Batcher`)."""
        return Batcher(self.tokenizer, max_length, self.device, self.accepts_token_types, bf16)

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def method(self, name: str) -> Method:
        return get_method(self.adapters[name].method)

    def add_adapter(self, name: str, method: str, labels: list[str], options: Any = None,
                    config: Any = None) -> AdapterInfo:
        """Add a freshly initialised adapter and head named `name`. `options`: the method's Options or a dict of
        them (missing ones at their default); `config`: the method's own config, as read from a saved folder."""
        if name in self.adapters:
            raise ConfigError(f"An adapter named '{name}' is already loaded.")
        kind = get_method(method)
        kind.supports(self.config, self.labels_as_text)
        if len(labels) < 2:
            raise ConfigError("A classifier needs at least 2 labels.")
        options = options if is_dataclass(options) else kind.options(options)
        config = kind.add(self, name, list(labels), options, config)
        self.heads[name] = kind.new_head(self, name, len(labels)).to(self.device)
        for p in self.backbone.parameters():  # new adapter weights are created trainable
            p.requires_grad_(False)
        self.adapters[name] = AdapterInfo(name, method, list(labels), options, config)
        self.to(self.device)
        self.train(self.training)  # new modules (a LoRA dropout) follow the model's mode
        self.set_active(name)
        return self.adapters[name]

    def delete_adapter(self, name: str) -> None:
        kind = self.method(name)
        if self.active == name:
            self.set_active(None)
        kind.remove(self, name)
        del self.heads[name]
        del self.adapters[name]

    def set_active(self, name: str | None) -> None:
        """Route the forward pass through adapter `name` (None: the plain base model); no weights move."""
        if name is not None and name not in self.adapters:
            raise ConfigError(f"No adapter named '{name}' is loaded.")
        for kind in {get_method(info.method) for info in self.adapters.values()}:
            kind.activate(self, None)
        if name is not None:
            kind = self.method(name)
            kind.activate(self, name)
            if kind.head == "task":  # the architecture's own head modules, swapped into the shared backbone
                for module_name, module in self.heads[name].items():
                    setattr(self.backbone, module_name, module)
        self.active = name

    def input_embeddings(self, name: str) -> nn.Embedding:
        """The word embeddings adapter `name`'s forward uses: the shared base's, or a fully fine-tuned model's own."""
        return self.method(name).input_embeddings(self, name)

    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        """The adapter's own weights, head excluded."""
        return self.method(name).parameters(self, name)

    def trainable_parameters(self, name: str) -> list[nn.Parameter]:
        return self.adapter_parameters(name) + list(self.heads[name].parameters())

    def parameter_counts(self, name: str) -> tuple[int, int]:
        """(adapter parameters, adapter + head parameters)."""
        adapter = sum(p.numel() for p in self.adapter_parameters(name))
        return adapter, adapter + sum(p.numel() for p in self.heads[name].parameters())

    def train_adapter(self, name: str) -> list[nn.Parameter]:
        """Make only adapter `name` and its head trainable; return those parameters."""
        self.requires_grad_(False)
        params = self.trainable_parameters(name)
        for p in params:
            p.requires_grad_(True)
        self.set_active(name)
        return params

    def adapter_state(self, name: str) -> dict[str, torch.Tensor]:
        """A copy of the adapter's and head's weights (for keeping the best epoch)."""
        return {str(i): p.detach().clone() for i, p in enumerate(self.trainable_parameters(name))}

    def load_adapter_state(self, name: str, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for i, p in enumerate(self.trainable_parameters(name)):
                p.copy_(state[str(i)])

    def train(self, mode: bool = True) -> AdapterModel:
        """Train mode for adapters and heads; the frozen encoder keeps its dropout off unless `base_dropout`.

        Dropout inside a frozen base cost a fifth of a CPU training step (random masks) and measured no better:
        SST-2 and TREC accuracy were equal or higher without it (docs/defaults.md). The head's dropout stays.
        """
        super().train(mode)
        if mode and not self.base_dropout:
            self.encoder.eval()
        return self

    def frozen_linears_to(self, dtype: torch.dtype) -> None:
        """Store the frozen encoder's linear layers in `dtype` (bf16 for mixed-precision training).

        Autocast would otherwise cast every frozen weight again at each step (it caches only trainable ones):
        the same numbers, computed once. Adapter and head weights stay fp32.
        """
        for module in self.encoder.modules():
            if type(module) is nn.Linear and not module.weight.requires_grad:
                module.to(dtype)

    def mixed_logits(self, batch: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
        """Row i's logits under adapter `names[i]`, one forward pass of the shared base for the whole batch.

        Each method's adapters act on their own rows only (`Method.route`); heads likewise (`RowHeads` in place
        of the architecture's head modules). A fully fine-tuned adapter has its own model, so its rows run through
        it apart, as do those of a method without `route`. Rows with fewer labels than the widest are padded with
        NaN on the right.
        """
        if len(names) != len(batch["input_ids"]):
            raise ConfigError(f"{len(names)} adapter names for {len(batch['input_ids'])} rows.")
        positions: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            if name not in self.adapters:
                raise ConfigError(f"No adapter named '{name}' is loaded.")
            positions.setdefault(name, []).append(i)
        rows = {name: torch.tensor(i, device=self.device) for name, i in positions.items()}
        width = max(len(self.adapters[name].labels) for name in rows)
        out = torch.full((len(names), width), float("nan"), device=self.device)
        previous = self.active
        heads = {m: getattr(self.backbone, m) for m in self.head_module_names()}  # what the rows run apart swap
        try:
            for name in [n for n in rows if not self.method(n).mixes or self.labels_as_text
                         or (self._projections_see_all_rows and self.method(n).head == "task")]:
                self.set_active(name)
                logits = self(**{k: v[rows[name]] for k, v in batch.items()})
                out[rows[name], : logits.shape[-1]] = logits.float()
                del rows[name]
            if rows:
                self.set_active(None)
                logits = self._shared_pass(batch, rows)
                for name, r in rows.items():
                    n = len(self.adapters[name].labels)
                    out[r, :n] = logits[r, :n].float()
        finally:
            for module_name, module in heads.items():
                setattr(self.backbone, module_name, module)
            self.set_active(previous)
        return out

    def _shared_pass(self, batch: dict[str, torch.Tensor], rows: dict[str, torch.Tensor]) -> torch.Tensor:
        """One forward pass of the base with every adapter in `rows` routed to its rows; zero-padded logits."""
        kinds = list({id(self.method(n)): self.method(n) for n in rows}.values())
        hub = [(self.heads[n], r) for n, r in rows.items() if self.method(n).head == "adapterhub"]
        task = {n: r for n, r in rows.items() if self.method(n).head == "task"}
        size = len(batch["input_ids"])
        originals = {m: getattr(self.backbone, m) for n in task for m in self.heads[n]}
        try:
            for kind in kinds:
                kind.route(self, rows, size)
                batch = kind.mixed_inputs(self, rows, batch)
            if not task:
                return RowHeads(hub)(self.encoder(**batch).last_hidden_state[:, 0])
            for module_name in originals:
                setattr(self.backbone, module_name, RowHeads([(self.heads[n][module_name], r) for n, r in task.items()
                                                              if module_name in self.heads[n]]))
            result = self.backbone(**batch, output_hidden_states=bool(hub))
            if not hub:
                return result.logits
            hidden = RowHeads(hub)(result.hidden_states[-1][:, 0])
            width = max(hidden.shape[-1], result.logits.shape[-1])
            pad = torch.nn.functional.pad
            return pad(result.logits, (0, width - result.logits.shape[-1])) + pad(hidden, (0, width - hidden.shape[-1]))
        finally:
            for kind in kinds:
                kind.route(self, None)
            for module_name, module in originals.items():
                setattr(self.backbone, module_name, module)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """Logits of the active adapter's head."""
        if self.active is None:
            raise ConfigError("No adapter is active.")
        return self.method(self.active).logits(self, self.active,
                                                {"input_ids": input_ids, "attention_mask": attention_mask, **kwargs})
