"""BERT for sequence classification (all-MiniLM-L6-v2 and other BERT checkpoints) in plain PyTorch.

Importing transformers 5's modelling code costs ~2 s and ~130 MiB in every process that builds a model (it brings
torch._dynamo, torch.distributed.tensor and accelerate; docs/benchmarks.md), a tenth of a short training job.
These modules compute what transformers' `BertForSequenceClassification` computes, with the same module tree and
parameter names, so every method's patches, PEFT's and AdapterHub's weight keys and the checkpoint's keys apply
unchanged (tests/test_bert_model.py compares the two). Checkpoints this does not cover (`load` says which) go
through transformers as before, as does every other architecture.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.hub import local_folder

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class ClassifierOutput:
    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None


# The widest batch for which training on CPU avoids SDPA's fused kernel, whose backward is slower up to here.
MATH_ATTENTION_WIDTH = 128


def eager_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                            **kwargs) -> tuple[torch.Tensor, None]:
    """Attention over (B, heads, T, head size) tensors, with a boolean (True: visible) or additive mask; the output
    as (B, T, heads, head size). The name and signature are transformers' attention interface's."""
    if (query.device.type == "cpu" and torch.is_grad_enabled() and key.shape[-2] <= MATH_ATTENTION_WIDTH
            and query.dtype == key.dtype == value.dtype == torch.bfloat16):
        out = _bf16_attention(query, key, value, attention_mask, scaling, dropout)
    else:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                             scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def _bf16_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                    scaling: float | None, dropout: float) -> torch.Tensor:
    """Attention for bf16 training on CPU: both products in bf16, the softmax in fp32. SDPA's math kernel copies
    all three inputs to fp32 and checks every row for being wholly masked, which makes steps slower; the scores
    carry bf16's rounding, as every other product of the step does (both measured in docs/benchmarks.md)."""
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    with torch.autocast("cpu", enabled=False):
        scores = torch.matmul(query, key.transpose(-1, -2)).float() * scaling
        if mask is not None:
            scores = (scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool
                      else scores + mask)
        probs = torch.softmax(scores, -1)
        if dropout:
            probs = F.dropout(probs, dropout)
        return torch.matmul(probs.to(value.dtype), value)


def _embedding(rows: int, size: int, padding_idx: int | None = None) -> nn.Embedding:
    """An embedding left uninitialised: its weights always come from the checkpoint, and a random normal fill on
    the meta device (where `new_model` builds skeletons) first imports torch's reference ops: 1.3 s."""
    return nn.Embedding(rows, size, padding_idx, _weight=torch.empty(rows, size))


class BertEmbeddings(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.word_embeddings = _embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.position_embeddings = _embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = _embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # made on the CPU even in a meta skeleton: `arange` on the meta device imports torch's reference ops
        positions = torch.arange(config.max_position_embeddings, device="cpu")[None]
        self.register_buffer("position_ids", positions, persistent=False)

    def forward(self, input_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        length = inputs_embeds.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(self.position_ids[:, :length])
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.scaling = self.attention_head_size**-0.5
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                query_states: torch.Tensor | None = None, **kwargs) -> tuple[torch.Tensor, None]:
        """`query_states`: the positions that attend (default: all); keys and values are every position's."""
        queries = hidden_states if query_states is None else query_states

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(*x.shape[:-1], -1, self.attention_head_size).transpose(1, 2)

        out, _ = eager_attention_forward(self, heads(self.query(queries)), heads(self.key(hidden_states)),
                                         heads(self.value(hidden_states)), attention_mask, self.scaling,
                                         self.dropout.p if self.training else 0.0)
        return out.reshape(*queries.shape[:-1], -1), None


class BertSelfOutput(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                first_token_only: bool = False) -> torch.Tensor:
        """With `first_token_only`, only position 0 attends (and goes on through the output block)."""
        if not first_token_only:
            return self.output(self.self(hidden_states, attention_mask=attention_mask)[0], hidden_states)
        first = hidden_states[:, :1]
        return self.output(self.self(hidden_states, attention_mask=attention_mask, query_states=first)[0], first)


class BertIntermediate(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertOutput(BertSelfOutput):
    def __init__(self, config) -> None:
        super().__init__(config)
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)


class BertLayer(nn.Module):
    # set on the last layer by engine/first_token.py (every head reads position 0): then its attention's queries,
    # output block and feed-forward block run for position 0 alone, keys and values for all
    first_token_only = False

    def __init__(self, config) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.feed_forward_chunk(self.attention(hidden_states, attention_mask, self.first_token_only))

    def feed_forward_chunk(self, attention_output: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(attention_output), attention_output)


class BertEncoder(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class BertModel(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                output_hidden_states: bool = False, **kwargs) -> EncoderOutput:
        """`attention_mask` (B, T) of 1 and 0, as the tokenizer gives it; the layers get it as (B, 1, 1, T) booleans
        (no check for a batch without padding: that would wait on the data once per step)."""
        hidden = self.embeddings(input_ids, token_type_ids, inputs_embeds)
        mask = None if attention_mask is None else attention_mask[:, None, None, :].bool()
        states = [hidden]
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask)
            states.append(hidden)
        return EncoderOutput(hidden, self.pooler(hidden), tuple(states) if output_hidden_states else None)


class BertForSequenceClassification(nn.Module):
    base_model_prefix = "bert"

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        dropout = config.classifier_dropout
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    @property
    def base_model(self) -> BertModel:
        return self.bert

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                output_hidden_states: bool = False, **kwargs) -> ClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, inputs_embeds, output_hidden_states)
        return ClassifierOutput(self.classifier(self.dropout(out.pooler_output)), out.hidden_states)


def covers(config) -> bool:
    """A plain BERT encoder: what these modules compute (anything else loads through transformers)."""
    return (config.model_type == "bert" and config.hidden_act in ACTIVATIONS and not config.is_decoder
            and not getattr(config, "add_cross_attention", False) and not config.chunk_size_feed_forward
            and getattr(config, "position_embedding_type", "absolute") == "absolute"
            and config.hidden_size % config.num_attention_heads == 0)


def _encoder_keys(key: str) -> str | None:
    """A checkpoint key as `BertModel` names it, or None for what it does not hold (MLM and task heads, the
    position ids buffer)."""
    key = key.removeprefix("bert.")
    return None if key.startswith(("cls.", "classifier.")) or key.endswith("position_ids") else key


def _weights(folder: Path, expected: set[str]) -> dict[str, torch.Tensor] | None:
    """The encoder's tensors from the folder's one safetensors file, keyed as `BertModel`'s; None, before any
    weight is read, if there is no such file or its encoder keys or dtypes (fp32) are not what `expected` says."""
    from safetensors import safe_open

    path = folder / "model.safetensors"
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        keys = {k: _encoder_keys(k) for k in f.keys()}
        kept = {k: ours for k, ours in keys.items() if ours is not None}
        if set(kept.values()) != expected or any(f.get_slice(k).get_dtype() != "F32" for k in kept):
            return None
        return {ours: f.get_tensor(k) for k, ours in kept.items()}


def new_model(config) -> BertForSequenceClassification | None:
    """The model's modules on the current default device (meta: for counting parameters; the embeddings are left
    uninitialised, see `_embedding`), or None if `config` is not one these modules compute."""
    return BertForSequenceClassification(config) if covers(config) else None


def load(name_or_path: str, config, num_labels: int = 2) -> BertForSequenceClassification | None:
    """The checkpoint in `name_or_path` (a folder, or a hub id in the local cache) as a
    `BertForSequenceClassification` with a new classifier, or None when transformers should load it: another
    architecture or setting, a model not on this machine yet, weights other than fp32 in one safetensors file, or
    a missing or extra encoder weight."""
    folder = local_folder(name_or_path) if covers(config) else None
    if folder is None:
        return None
    config = copy.deepcopy(config)
    config.num_labels = num_labels
    with torch.device("meta"):
        model = BertForSequenceClassification(config)
    state = _weights(folder, set(model.bert.state_dict()))
    if state is None:
        return None
    model.bert.load_state_dict(state, assign=True)
    # drawn as transformers draws a missing classifier, into tensors made on the CPU: `to_empty` from the meta
    # device imports torch's reference ops and sympy (0.4 s)
    for key, tensor in model.classifier.named_parameters():
        setattr(model.classifier, key, nn.Parameter(torch.empty(tensor.shape)))
    nn.init.normal_(model.classifier.weight, std=config.initializer_range)
    nn.init.zeros_(model.classifier.bias)
    return model
