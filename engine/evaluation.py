"""Metrics for a classifier: accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from engine.batching import Batcher
from engine.data import Split


def classification_metrics(labels: list[int], predictions: list[int], names: list[str]) -> dict:
    ids = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=ids, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(names)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=ids).tolist(),
        "labels": list(names),
    }


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, batcher: Batcher, data: Split, batch_size: int = 64) -> torch.Tensor:
    """Logits for every row, in the data's order (batches are sorted by length to cut padding)."""
    was_training = model.training
    model.eval()
    encoded = batcher.encode(data.texts, data.pairs)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))  # tokens, not dict keys
    out = torch.empty(len(encoded), len(model.adapters[model.active].labels))
    chunks = []  # kept on the device: one copy to the host at the end, no synchronisation per batch
    for start in range(0, len(order), batch_size):
        batch = batcher.collate([encoded[i] for i in order[start : start + batch_size]])
        with batcher.autocast():
            chunks.append(model(**batch).float())
    if chunks:
        out[order] = torch.cat(chunks).cpu()
    model.train(was_training)
    return out


def evaluate(model: torch.nn.Module, batcher: Batcher, data: Split, names: list[str]) -> dict:
    logits = predict_logits(model, batcher, data)
    metrics = classification_metrics(data.labels, logits.argmax(-1).tolist(), names)
    metrics["loss"] = float(torch.nn.functional.cross_entropy(logits, torch.tensor(data.labels)))
    return metrics
