"""How far to trust a probability: expected calibration error, temperature scaling and a binary decision threshold.

Temperature scaling (Guo et al., 2017) divides every logit by one scalar fitted on the validation split by
minimising the negative log-likelihood; the arg-max, hence accuracy, never changes. A threshold moves a binary
classifier's operating point along its precision/recall curve.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

BINS = 10
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def temperature_in_use(meta: dict) -> float:
    """The temperature predict divides by, from an adapter's metadata: its fitted one unless switched off, else 1
    (also for adapters saved elsewhere, which have none)."""
    return float(meta.get("temperature") or 1.0) if meta.get("apply_temperature", True) else 1.0


def reliability(probs: torch.Tensor, labels: list[int], bins: int = BINS) -> list[dict]:
    """Rows of confidence (the top probability) in `bins` equal-width bins: count, mean confidence, accuracy."""
    confidence, predicted = probs.max(-1)
    correct = (predicted == torch.tensor(labels)).double()
    edges = torch.linspace(0, 1, bins + 1)
    out = []
    for b in range(bins):
        low, high = float(edges[b]), float(edges[b + 1])
        inside = (confidence > low) & (confidence <= high) if b else (confidence >= low) & (confidence <= high)
        n = int(inside.sum())
        out.append({"low": low, "high": high, "count": n,
                    "confidence": float(confidence[inside].double().mean()) if n else None,
                    "accuracy": float(correct[inside].mean()) if n else None})
    return out


def ece(probs: torch.Tensor, labels: list[int], bins: int = BINS) -> float:
    """Expected calibration error: the row-weighted mean gap between confidence and accuracy over the bins."""
    rows = reliability(probs, labels, bins)
    total = sum(r["count"] for r in rows)
    return sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows if r["count"]) / max(1, total)


def nll(logits: torch.Tensor, labels: list[int], temperature: float = 1.0) -> float:
    return float(F.cross_entropy(logits.double() / temperature, torch.tensor(labels)))


def fit_temperature(logits: torch.Tensor, labels: list[int]) -> float:
    """The temperature in [1/20, 20] minimising the validation NLL; 1 when the rows hold no error, where the NLL
    only falls as T -> 0 and would make every later prediction over-confident.

    The NLL is convex in b = 1/T (a log-sum-exp of b times the logits, less b times the true logit), so its
    slope, E_softmax(b z)[z] - z_true averaged over the rows, rises with b: bisecting the slope over the
    interval finds the minimum to float64 precision, with no optimiser (torch.optim would import torch's
    compiler, ~1 s, into every training process). The interval keeps a few validation rows from pushing T to
    where every probability is 1/n or 1.
    """
    logits, target = logits.detach().double(), torch.tensor(labels)
    if bool((logits.argmax(-1) == target).all()):
        return 1.0
    true_logit = logits.gather(1, target[:, None]).squeeze(1)

    def slope(b: float) -> float:
        return float(((logits * (b * logits).softmax(-1)).sum(-1) - true_logit).mean())

    low, high = 1 / MAX_TEMPERATURE, 1 / MIN_TEMPERATURE
    if slope(low) >= 0:
        return MAX_TEMPERATURE
    if slope(high) <= 0:
        return MIN_TEMPERATURE
    for _ in range(60):  # halves [1/20, 20] to below float64's resolution
        mid = (low + high) / 2
        low, high = (mid, high) if slope(mid) < 0 else (low, mid)
    return 1 / ((low + high) / 2)


@dataclass
class Calibration:
    """Before and after temperature scaling on one labelled set (the contract of `evaluate --json`)."""

    temperature: float
    ece_before: float
    ece: float
    nll_before: float
    nll: float
    rows: int
    reliability_before: list[dict]
    reliability: list[dict]

    def as_dict(self) -> dict:
        return asdict(self)


def calibrate(logits: torch.Tensor, labels: list[int], temperature: float | None = None) -> Calibration:
    """Fit the temperature on these rows (or apply a given one, as on a test file) and measure both sides."""
    t = fit_temperature(logits, labels) if temperature is None else temperature
    before, after = logits.softmax(-1), (logits / t).softmax(-1)
    return Calibration(round(t, 6), ece(before, labels), ece(after, labels), nll(logits, labels),
                       nll(logits, labels, t), len(labels), reliability(before, labels), reliability(after, labels))


def pr_curve(positive: torch.Tensor, is_positive: list[bool]) -> list[dict]:
    """Precision, recall and F1 at every distinct score taken as threshold (predict positive at >= threshold),
    highest threshold first."""
    order = torch.argsort(positive, descending=True, stable=True)
    scores = positive[order]
    truth = torch.tensor(is_positive, dtype=torch.float64)[order]
    tp = truth.cumsum(0)
    fp = (1 - truth).cumsum(0)
    total = float(truth.sum())
    out = []
    for i in range(len(scores)):
        if i + 1 < len(scores) and scores[i + 1] == scores[i]:
            continue  # ties: one point at the last row sharing this score
        precision = float(tp[i] / (tp[i] + fp[i]))
        recall = float(tp[i] / total) if total else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append({"threshold": float(scores[i]), "precision": precision, "recall": recall, "f1": f1})
    return out


RULES = ("max_f1", "precision", "recall")


def choose_threshold(curve: list[dict], rule: str = "max_f1", target: float | None = None) -> dict:
    """The curve point a rule picks: the best F1; or the highest recall with precision >= target; or the highest
    precision with recall >= target. Raises ValueError when no point reaches the target."""
    if rule == "max_f1":
        return max(curve, key=lambda p: (p["f1"], p["threshold"]))
    if rule not in RULES or target is None:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, the last two with a target")
    other = "recall" if rule == "precision" else "precision"
    reaching = [p for p in curve if p[rule] >= target]
    if not reaching:
        best = max(p[rule] for p in curve)
        raise ValueError(f"No threshold reaches a {rule} of {target:g} on this data; the highest is {best:.3f}.")
    return max(reaching, key=lambda p: (p[other], p["threshold"]))


def decide(probs: torch.Tensor, labels: list[str], threshold: dict | None) -> list[int]:
    """Predicted label ids: the arg-max, or for a binary adapter with a threshold `{"label", "value"}`, that
    label whenever its probability reaches the value."""
    if not threshold or len(labels) != 2 or threshold.get("label") not in labels:
        return probs.argmax(-1).tolist()
    pos = labels.index(threshold["label"])
    return [pos if float(p) >= threshold["value"] else 1 - pos for p in probs[:, pos]]
