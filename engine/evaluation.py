"""Metrics for a classifier: accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from collections.abc import Callable

import torch

from engine.batching import Batcher
from engine.data import Split


def classification_metrics(labels: list[int], predictions: list[int], names: list[str]) -> dict:
    """Computed from the confusion matrix in a few lines: scikit-learn would add a second and ~180 MB per run."""
    n = len(names)
    cm = torch.bincount(torch.tensor(labels) * n + torch.tensor(predictions), minlength=n * n).reshape(n, n)
    hits, support, predicted = cm.diagonal().double(), cm.sum(1).double(), cm.sum(0).double()
    precision = torch.where(predicted > 0, hits / predicted.clamp(min=1), 0.0)
    recall = torch.where(support > 0, hits / support.clamp(min=1), 0.0)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), 0.0)
    return {
        "accuracy": float(hits.sum() / max(1, len(labels))),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(names)
        },
        "confusion_matrix": cm.tolist(),
        "labels": list(names),
    }


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, batcher: Batcher, data: Split, batch_size: int = 32) -> torch.Tensor:
    """Logits for every row, in the data's order (batches are sorted by length to cut padding). 32 rows a batch:
    on 2-core EPYCs 64 made the element-wise ops' tensors too big for the caches (docs/benchmarks.md)."""
    was_training = model.training
    if was_training:  # an eval model stays so (new adapters follow its mode): a walk of every module saved per call
        model.eval()

    def run(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with batcher.autocast():
            return model(**batch).float()

    out = logits_in_length_order(batcher, data, batch_size, len(model.adapters[model.active].labels), run)
    if was_training:
        model.train()
    return out


def logits_in_length_order(batcher: Batcher, data: Split, batch_size: int, labels: int,
                           run: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> torch.Tensor:
    """`run` over the rows' batches, sorted by length to cut padding; its logits back in the data's order."""
    encoded = batcher.encode(data.texts, data.pairs)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))  # tokens, not dict keys
    out = torch.empty(len(encoded), labels)
    chunks = []  # kept on the device: one copy to the host at the end, no synchronisation per batch
    for start in range(0, len(order), batch_size):
        chunks.append(run(batcher.collate([encoded[i] for i in order[start : start + batch_size]])))
    if chunks:
        out[order] = torch.cat(chunks).cpu()
    return out


def evaluate(model: torch.nn.Module, batcher: Batcher, data: Split, names: list[str]) -> tuple[dict, torch.Tensor]:
    """The metrics on `data`, and the logits they came from (kept for calibration and the error browser)."""
    logits = predict_logits(model, batcher, data)
    metrics = classification_metrics(data.labels, logits.argmax(-1).tolist(), names)
    metrics["loss"] = float(torch.nn.functional.cross_entropy(logits, torch.tensor(data.labels)))
    return metrics, logits
