"""Labels written as text by an encoder-decoder (T5, mT0), the way the seed trained mT0, with probabilities.

Each label is a short text (its name). The decoder scores every label's token sequence, end-of-text included,
given the input: log p(label | text) = sum over t of log p(token_t | text, tokens before t). Those sums are the
logits: their softmax is each label's probability among the labels (the decoder constrained to writing one of
them), their cross-entropy the training loss, so calibration, thresholds and every metric work as for a
classifier head. Generating freely and reading the answer back gives the same label when the model is sure, a
string that is no label when it is not, and no probability at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from engine.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

IGNORE = -100  # a position past the end of a shorter label


def check(config: PretrainedConfig, method_label: str = "", trains_own_model: bool = False) -> None:
    """Refuse labels as text where they cannot be: a model without a decoder, a method with a head of its own."""
    if not config.is_encoder_decoder:
        raise ConfigError(f"Labels as text need an encoder-decoder base model (T5, mT0); this is a "
                          f"{config.model_type} model: turn that setting off.")
    if trains_own_model:
        raise ConfigError(f"{method_label} trains a classification head, not labels as text: turn that setting "
                          "off, or choose LoRA or IA3.")


def label_token_ids(tokenizer: PreTrainedTokenizerBase, labels: list[str]) -> torch.Tensor:
    """(labels, longest) token ids of each label as the decoder writes it (end-of-text included), padded with
    IGNORE."""
    ids = tokenizer(list(labels), add_special_tokens=True)["input_ids"]
    out = torch.full((len(ids), max(map(len, ids))), IGNORE, dtype=torch.long)
    for i, row in enumerate(ids):
        out[i, : len(row)] = torch.tensor(row)
    return out


def label_scores(model: nn.Module, batch: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """(rows, labels) log-likelihoods of each label's tokens for each row: the encoder runs once per row, the
    decoder once per row and label."""
    rows, count = len(batch["input_ids"]), len(labels)
    encoded = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    hidden = encoded.last_hidden_state.repeat_interleave(count, 0)
    target = labels.to(hidden.device).repeat(rows, 1)
    decoder_input = model.prepare_decoder_input_ids_from_labels(labels=target)
    from transformers.modeling_outputs import BaseModelOutput  # loaded with the model by then

    logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                   attention_mask=batch["attention_mask"].repeat_interleave(count, 0),
                   decoder_input_ids=decoder_input).logits
    picked = logits.float().log_softmax(-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (target != IGNORE)).sum(-1).view(rows, count)
