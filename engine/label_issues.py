"""Rows whose given label the model strongly disagrees with: confident learning (Northcutt et al., 2021).

This is cleanlab's `find_label_issues(labels, pred_probs, filter_by="confident_learning",
return_indices_ranked_by="self_confidence")` rule, written out because cleanlab pulls scikit-learn in (the
tests check the two agree, with cleanlab from the reference environment):

1. each class j gets a threshold t_j: the mean probability of j over the rows labelled j;
2. a row is *confidently* of class j when p_j >= t_j; a row confident in several classes counts as its most
   probable class;
3. a row labelled i that is confidently of another class j, and whose most probable class is not i, is a label
   issue, ranked by its self-confidence p_i (lowest first), suggested label j.

The probabilities must be out-of-sample (the model did not train on those rows): on rows it trained on a model
agrees with the given labels, wrong ones included.
"""

from __future__ import annotations

import torch


def class_thresholds(probs: torch.Tensor, labels: list[int]) -> torch.Tensor:
    """t_j = mean p_j over the rows labelled j (a class with no rows never counts as confident)."""
    given = torch.tensor(labels)
    out = torch.full((probs.shape[1],), float("inf"), dtype=probs.dtype)
    for j in range(probs.shape[1]):
        rows = given == j
        if rows.any():
            out[j] = probs[rows, j].mean()
    return out


def find_label_issues(probs: torch.Tensor, labels: list[int], thresholds: torch.Tensor | None = None) -> list[dict]:
    """Issues as `{"row", "given", "suggested", "score"}` (label ids; score = 1 - self-confidence), most
    suspicious first. `thresholds` default to those of these rows."""
    probs = probs.double()
    t = class_thresholds(probs, labels) if thresholds is None else thresholds.double()
    above = probs >= t - 1e-6  # cleanlab's tolerance for floating-point ties at t_j
    confident_in = above.sum(-1)
    best = probs.argmax(-1)
    confident = torch.where(confident_in > 1, best, above.int().argmax(-1))
    given = torch.tensor(labels)
    flagged = ((confident_in > 0) & (confident != given) & (best != given)).nonzero().flatten().tolist()
    self_confidence = probs[torch.arange(len(labels)), given]
    flagged.sort(key=lambda r: (float(self_confidence[r]), r))
    return [{"row": r, "given": labels[r], "suggested": int(confident[r]), "score": 1 - float(self_confidence[r])}
            for r in flagged]
