"""Issue 11's maths on fixed numbers: ECE by hand, temperature scaling, precision/recall thresholds, confident
learning (against cleanlab itself, from the reference venv), class weights."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
import torch

from engine.calibration import calibrate, choose_threshold, decide, ece, fit_temperature, nll, pr_curve, reliability
from engine.label_issues import class_thresholds, find_label_issues
from engine.training import class_weights
from tests.test_interop_adapterhub import VENV_PYTHON


def test_ece_by_hand():
    # confidences 0.95, 0.85, 0.8, 0.6, 0.55 (bins 10, 9, 8, 6, 6), correct: yes, no, yes, yes, no
    probs = torch.tensor([[0.95, 0.05], [0.15, 0.85], [0.8, 0.2], [0.4, 0.6], [0.55, 0.45]])
    labels = [0, 0, 0, 1, 1]
    # bin (0.9, 1]: |1 - .95| = .05 (1 row); (0.8, 0.9]: |0 - .85| (1 row); (0.7, 0.8]: |1 - .8| (1 row);
    # (0.5, 0.6]: two rows, accuracy 1/2, mean confidence .575 -> .075 * 2
    expected = (0.05 + 0.85 + 0.2 + 2 * 0.075) / 5
    assert ece(probs, labels) == pytest.approx(expected)
    rows = reliability(probs, labels)
    assert [r["count"] for r in rows] == [0, 0, 0, 0, 0, 2, 0, 1, 1, 1]
    assert rows[5]["accuracy"] == 0.5 and rows[5]["confidence"] == pytest.approx(0.575)


def test_temperature_scaling_undoes_overconfidence():
    """Logits drawn from a calibrated model, then multiplied by 4: the fitted temperature is about 4, the NLL and
    ECE fall, and no prediction changes."""
    gen = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 3, generator=gen) * 1.5
    labels = torch.multinomial(true_logits.softmax(-1), 1, generator=gen).flatten().tolist()
    logits = true_logits * 4
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(4, rel=0.1)
    c = calibrate(logits, labels)
    assert c.nll < c.nll_before and c.ece < c.ece_before / 3
    assert c.nll == pytest.approx(nll(logits, labels, t))
    assert torch.equal((logits / t).argmax(-1), logits.argmax(-1))


def test_a_calibrated_model_keeps_a_temperature_near_one():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4000, 2, generator=gen) * 2
    labels = torch.multinomial(logits.softmax(-1), 1, generator=gen).flatten().tolist()
    assert fit_temperature(logits, labels) == pytest.approx(1, abs=0.1)


def test_precision_recall_curve_and_operating_points():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.4, 0.3], dtype=torch.float64)
    truth = [True, True, False, True, False, False]
    curve = pr_curve(scores, truth)
    assert [(p["threshold"], round(p["precision"], 3), round(p["recall"], 3)) for p in curve] == [
        (0.9, 1.0, 0.333), (0.8, 1.0, 0.667), (0.7, 0.667, 0.667), (0.6, 0.75, 1.0), (0.4, 0.6, 1.0),
        (0.3, 0.5, 1.0)]
    assert choose_threshold(curve)["threshold"] == pytest.approx(0.6)  # F1 6/7
    assert choose_threshold(curve, "precision", 0.95)["threshold"] == pytest.approx(0.8)
    assert choose_threshold(curve, "recall", 1.0)["threshold"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="No threshold reaches a precision of 1.01"):
        choose_threshold(curve, "precision", 1.01)


def test_decide_follows_the_threshold_for_its_label():
    probs = torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]])
    labels = ["ham", "spam"]
    assert decide(probs, labels, None) == [0, 1, 0]
    assert decide(probs, labels, {"label": "spam", "value": 0.25}) == [1, 1, 0]
    assert decide(probs, labels, {"label": "ham", "value": 0.8}) == [1, 1, 0]


def test_label_issues_rule_on_fixed_probabilities():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7], [0.95, 0.05], [0.6, 0.4]])
    labels = [0, 0, 1, 1, 1, 1]  # rows 4 and 5: labelled 1, the model says 0
    assert class_thresholds(probs.double(), labels).tolist() == pytest.approx([0.85, (0.9 + 0.7 + 0.05 + 0.4) / 4])
    found = find_label_issues(probs, labels)
    assert [(i["row"], i["given"], i["suggested"]) for i in found] == [(4, 1, 0)]  # 0.6 < t_0: not confident
    assert found[0]["score"] == pytest.approx(0.95)


CLEANLAB = """
import json, sys
import numpy as np
from cleanlab.filter import find_label_issues
d = json.load(sys.stdin)
idx = find_label_issues(np.array(d["labels"]), np.array(d["probs"]), filter_by="confident_learning",
                        return_indices_ranked_by="self_confidence")
print(json.dumps([int(i) for i in idx]))
"""


def _has_cleanlab() -> bool:
    return VENV_PYTHON.exists() and subprocess.run([str(VENV_PYTHON), "-c", "import cleanlab"],
                                                   capture_output=True).returncode == 0


@pytest.mark.interop
@pytest.mark.skipif(not _has_cleanlab(), reason="reference venv with cleanlab absent: run "
                    "scripts/make_reference_venv.sh")
@pytest.mark.parametrize("classes", [2, 4])
def test_label_issues_match_cleanlab(classes):
    gen = torch.Generator().manual_seed(classes)
    probs = (torch.randn(600, classes, generator=gen) * 2).softmax(-1).double()
    labels = torch.multinomial(probs, 1, generator=gen).flatten()
    flip = torch.rand(600, generator=gen) < 0.1
    labels = torch.where(flip, (labels + 1) % classes, labels).tolist()
    ours = [i["row"] for i in find_label_issues(probs, labels)]
    run = subprocess.run([str(VENV_PYTHON), "-c", CLEANLAB], input=json.dumps({"labels": labels,
                         "probs": probs.tolist()}), capture_output=True, text=True, check=True, timeout=300)
    theirs = json.loads(run.stdout)
    assert len(ours) > 20
    assert ours == theirs


def test_class_weights_are_balanced():
    w = class_weights([0, 0, 0, 1], 3)
    assert w[0] == pytest.approx(4 / 9) and w[1] == pytest.approx(4 / 3)
    assert w[2] == pytest.approx(4 / 3)  # no rows: counted as one, never a division by zero
    assert all(math.isclose(x, 1) for x in class_weights([0, 1, 2, 0, 1, 2], 3).tolist())


def test_temperature_equals_a_numerical_minimiser_and_stays_in_its_bounds():
    """The bisection on the NLL's slope lands where torch's L-BFGS over log T does, at an NLL no higher; rows
    that are all wrong with confidence push T to its upper bound, as none would otherwise lower the NLL further."""
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(500, 4, generator=gen, dtype=torch.float64) * 3
    labels = torch.multinomial((logits / 2).softmax(-1), 1, generator=gen).flatten().tolist()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    lbfgs = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe", tolerance_grad=1e-12)

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), torch.tensor(labels))
        loss.backward()
        return loss

    lbfgs.step(closure)
    t, reference = fit_temperature(logits, labels), float(log_t.exp())
    assert t == pytest.approx(reference, rel=1e-4)  # L-BFGS stops once the loss moves by less than 1e-9
    assert nll(logits, labels, t) <= nll(logits, labels, reference)
    wrong = torch.tensor([[5.0, 0.0], [0.0, 5.0]] * 10)
    assert fit_temperature(wrong, [1, 0] * 10) == 20.0
