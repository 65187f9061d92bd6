"""Which words pushed a prediction toward each label: Integrated Gradients over the word embeddings (captum).

IG integrates the gradient of a label's logit along the straight line from a baseline input to the text, so a
token's attribution is its share of logit(text) - logit(baseline), and the shares add up to that difference
(completeness; captum reports how far its numerical integral is off as the convergence delta). The baseline is
the same token ids with every word replaced by the pad token ([CLS]/[SEP] kept, positions and token types
unchanged): "the text with its words taken out". Gradient x input would need one backward pass instead of
n_steps, but has no completeness, and its scores on saturated heads say little.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import LayerIntegratedGradients

from engine.adapter_model import AdapterModel

# Gauss-Legendre points per label. 16 keep the convergence delta within a few percent of the logit difference
# on the bundled model, and a 30-token sentence at 4 labels takes well under 1 s on a CPU (docs/benchmarks.md).
N_STEPS = 16


@dataclass(frozen=True)
class Explanation:
    """Attributions of every label's logit: per token (special tokens included, for the completeness check) and
    per word (WordPiece pieces summed, special tokens left out), with captum's delta per label."""

    tokens: list[str]
    token_scores: torch.Tensor  # (labels, tokens)
    deltas: torch.Tensor  # (labels,): sum of a row of token_scores - (logit(text) - logit(baseline))
    words: list[str]  # as they are written in the text
    word_scores: torch.Tensor  # (labels, words)
    batch: dict[str, torch.Tensor]  # the model inputs explained
    baseline_ids: torch.Tensor

    def words_for(self, label: int) -> list[list[str | float]]:
        """`[[word, weight], ...]` for one label, in the text's order."""
        return [[word, float(w)] for word, w in zip(self.words, self.word_scores[label].tolist(), strict=True)]


def baseline_ids(input_ids: torch.Tensor, special: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The ids with every non-special token replaced by the pad token."""
    return torch.where(special, input_ids, torch.full_like(input_ids, pad_id))


def explain(model: AdapterModel, name: str, text: str, text_pair: str | None = None, max_length: int = 128,
            n_steps: int = N_STEPS) -> Explanation:
    """Integrated Gradients of each of adapter `name`'s label logits for one text (or pair), in full precision."""
    tokenizer = model.tokenizer
    batcher = model.batcher(max_length, bf16=False)
    enc = tokenizer(text, text_pair, truncation=True, max_length=max_length, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    row = {"input_ids": enc["input_ids"]}
    if batcher.uses_token_types:
        row["token_type_ids"] = enc["token_type_ids"]
    batch = batcher.collate([row])
    special = torch.tensor(enc["special_tokens_mask"], dtype=torch.bool, device=batch["input_ids"].device)[None]
    base_ids = baseline_ids(batch["input_ids"], special, batcher.pad_id)
    labels = len(model.adapters[name].labels)
    rest = [k for k in batch if k != "input_ids"]

    def logits(input_ids: torch.Tensor, *others: torch.Tensor) -> torch.Tensor:
        return model(input_ids, **dict(zip(rest, others, strict=True))).float()

    model.set_active(name)
    was_training = model.training
    model.eval()
    ig = LayerIntegratedGradients(logits, model.input_embeddings(name))
    try:
        with torch.enable_grad():  # one row per label: every label's attributions in one pass
            scores, deltas = ig.attribute(
                batch["input_ids"].expand(labels, -1), baselines=base_ids.expand(labels, -1),
                additional_forward_args=tuple(batch[k].expand(labels, -1) for k in rest),
                target=list(range(labels)), n_steps=n_steps, return_convergence_delta=True)
    finally:
        model.train(was_training)
    token_scores = scores.sum(-1).detach().cpu().double()
    words, members = _words(enc, [text, text_pair])
    pieces = torch.zeros(token_scores.shape[1], len(words), dtype=token_scores.dtype)  # token -> its word
    for w, tokens in enumerate(members):
        pieces[tokens, w] = 1
    return Explanation(tokenizer.convert_ids_to_tokens(enc["input_ids"]), token_scores, deltas.detach().cpu().double(),
                       words, token_scores @ pieces, batch, base_ids)


def _words(enc, sources: list[str | None]) -> tuple[list[str], list[list[int]]]:
    """The words of the text in its own spelling (from the tokenizer's offsets) and the tokens each is made of:
    WordPiece's "un", "##believ", "##ably" are one word."""
    found: dict[tuple[int, int], tuple[int, int, list[int]]] = {}  # (sequence, word) -> start, end, tokens
    for i, (seq, word) in enumerate(zip(enc.sequence_ids(), enc.word_ids(), strict=True)):
        if seq is None or word is None:  # [CLS], [SEP]
            continue
        start, end = enc["offset_mapping"][i]
        first, _, tokens = found.setdefault((seq, word), (start, end, []))
        found[seq, word] = (first, end, [*tokens, i])
    words = [sources[seq][start:end] for (seq, _), (start, end, _) in found.items()]
    return words, [tokens for _, _, tokens in found.values()]
