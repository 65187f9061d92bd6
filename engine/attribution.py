"""Which words pushed a prediction toward each label: Integrated Gradients over the word embeddings (captum).

IG integrates the gradient of a label's logit along the straight line from a baseline input to the text, so a
token's attribution is its share of logit(text) - logit(baseline), and the shares add up to that difference
(completeness). The integral is a sum over n_steps points; captum reports how far that sum is off as the
convergence delta, and a label whose delta is too large is integrated again with twice the points. The baseline
is the same token ids with every word replaced by the pad token ([CLS]/[SEP] kept, positions and token types
unchanged): "the text with its words taken out". Gradient x input would need one backward pass instead of
n_steps, but has no completeness, and on a saturated head its scores say little.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import LayerIntegratedGradients

from engine.adapter_model import AdapterModel
from engine.batching import TEXT_CHARS

# Gauss-Legendre points per label at first: within the tolerance for 35 of 40 demo tickets on the bundled model,
# and a 30-token sentence at 4 labels in about 0.9 s on one CPU core (docs/benchmarks.md#word-attributions).
# A label that misses is integrated again with twice the points, up to MAX_STEPS.
N_STEPS = 16
MAX_STEPS = 64
# The largest miss accepted, per label: a share of the text's largest logit change (the scale the weights are read
# on; a label whose logit hardly moves may still swing along the path), plus float32 round-off.
TOLERANCE, ROUND_OFF = 0.05, 1e-3
# Tokens in one forward/backward pass (rows x length): the backward pass keeps every layer's activations, about
# 18 MB per 128-token row on the bundled model: a long text at 4 labels x 16 points would hold 1.2 GB at once.
TOKENS_PER_PASS = 2048


@dataclass(frozen=True)
class Explanation:
    """Attributions of every label's logit: per token (special tokens included, for the completeness check) and
    per word (WordPiece pieces summed, special tokens left out), with captum's delta per label."""

    tokens: list[str]
    token_scores: torch.Tensor  # (labels, tokens)
    deltas: torch.Tensor  # (labels,): sum of a row of token_scores - (logit(text) - logit(baseline))
    n_steps: int  # the most points a label's integral took
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


def off_labels(token_scores: torch.Tensor, deltas: torch.Tensor) -> list[int]:
    """The labels whose attributions miss their logit difference by more than the tolerance."""
    difference = token_scores.sum(-1) - deltas
    return (deltas.abs() > TOLERANCE * difference.abs().max() + ROUND_OFF).nonzero().flatten().tolist()


def explain(model: AdapterModel, name: str, text: str, text_pair: str | None = None, max_length: int = 128,
            n_steps: int = N_STEPS, max_steps: int = MAX_STEPS) -> Explanation:
    """Integrated Gradients of each of adapter `name`'s label logits for one text (or pair), in full precision,
    with n_steps points, doubled up to max_steps for the labels whose attributions do not add up (`off_labels`)."""
    tokenizer = model.tokenizer
    batcher = model.batcher(max_length, bf16=False)
    text = text[:TEXT_CHARS]  # a prefix, as training and prediction read it: the offsets still point into it
    text_pair = text_pair[:TEXT_CHARS] if text_pair is not None else None
    enc = tokenizer(text, text_pair, truncation=True, max_length=max_length, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    row = {"input_ids": enc["input_ids"]}
    if batcher.uses_token_types:
        row["token_type_ids"] = enc["token_type_ids"]
    batch = batcher.collate([row])
    special = torch.tensor(enc["special_tokens_mask"], dtype=torch.bool, device=batch["input_ids"].device)[None]
    base_ids = baseline_ids(batch["input_ids"], special, batcher.pad_id)
    rest = [k for k in batch if k != "input_ids"]

    def logits(input_ids: torch.Tensor, *others: torch.Tensor) -> torch.Tensor:
        return model(input_ids, **dict(zip(rest, others, strict=True))).float()

    model.set_active(name)
    ig = LayerIntegratedGradients(logits, model.input_embeddings(name))

    def integrate(targets: list[int], points: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(token scores, deltas) of these labels: one row per label, all in one call."""
        rows = len(targets)
        with torch.enable_grad():
            scores, deltas = ig.attribute(
                batch["input_ids"].expand(rows, -1), baselines=base_ids.expand(rows, -1),
                additional_forward_args=tuple(batch[k].expand(rows, -1) for k in rest), target=targets,
                n_steps=points, return_convergence_delta=True,
                internal_batch_size=max(rows, TOKENS_PER_PASS // batch["input_ids"].shape[1]))
        return scores.sum(-1).detach().cpu().double(), deltas.detach().cpu().double()

    was_training = model.training
    model.eval()
    try:
        token_scores, deltas = integrate(list(range(len(model.adapters[name].labels))), n_steps)
        while n_steps * 2 <= max_steps and (off := off_labels(token_scores, deltas)):
            n_steps *= 2
            token_scores[off], deltas[off] = integrate(off, n_steps)
    finally:
        model.train(was_training)
    words, members = _words(enc, [text, text_pair])
    pieces = torch.zeros(token_scores.shape[1], len(words), dtype=token_scores.dtype)  # token -> its word
    for w, tokens in enumerate(members):
        pieces[tokens, w] = 1
    return Explanation(tokenizer.convert_ids_to_tokens(enc["input_ids"]), token_scores, deltas, n_steps, words,
                       token_scores @ pieces, batch, base_ids)


def _words(enc, sources: list[str | None]) -> tuple[list[str], list[list[int]]]:
    """The words of the text in its own spelling (from the tokenizer's offsets) and the tokens each is made of:
    WordPiece's "un", "##bel", "##ie", "##va", "##bly" are one word."""
    found: dict[tuple[int, int], tuple[int, int, list[int]]] = {}  # (sequence, word) -> start, end, tokens
    for i, (seq, word) in enumerate(zip(enc.sequence_ids(), enc.word_ids(), strict=True)):
        if seq is None or word is None:  # [CLS], [SEP]
            continue
        start, end = enc["offset_mapping"][i]
        first, _, tokens = found.setdefault((seq, word), (start, end, []))
        found[seq, word] = (first, end, [*tokens, i])
    words = [sources[seq][start:end] for (seq, _), (start, end, _) in found.items()]
    return words, [tokens for _, _, tokens in found.values()]
