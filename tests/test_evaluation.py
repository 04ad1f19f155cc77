"""helpers.train.evaluation: metrics against counts done by hand, predictions and losses over a loader."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from helpers.train.evaluation import compute_metrics, evaluate, predict_loader


def binary_probs(p_fake: list[float]) -> torch.Tensor:
    p = torch.tensor(p_fake)
    return torch.stack([p, 1 - p], dim=1)  # (N, 2): column 0 = fake, column 1 = real


# 8 images: 4 fake (label 0), then 4 real (label 1); probability of "fake" for each.
TARGETS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
P_FAKE = [0.9, 0.8, 0.4, 0.6, 0.7, 0.55, 0.1, 0.3]
# Predicted fake (p > 0.5): images 0, 1, 3 (fake) and 4, 5 (real).
# Positive class = fake: TP = 3 (0, 1, 3), FN = 1 (2), FP = 2 (4, 5), TN = 2 (6, 7).
# AUROC = P(score of a fake > score of a real) over the 4 x 4 pairs:
#   0.9 beats 4, 0.8 beats 4, 0.4 beats 2 (0.1, 0.3), 0.6 beats 3 (0.55, 0.1, 0.3) -> 13 / 16.


def test_binary_metrics_match_hand_counts_with_fake_as_positive():
    m = compute_metrics(binary_probs(P_FAKE), TARGETS)  # positive_class defaults to 0 = fake
    tp, fn, fp, tn = 3, 1, 2, 2
    assert m["accuracy"] == pytest.approx((tp + tn) / 8)
    assert m["precision"] == pytest.approx(tp / (tp + fp))  # 0.6
    assert m["recall"] == pytest.approx(tp / (tp + fn))  # 0.75
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    assert m["auroc"] == pytest.approx(13 / 16)
    # rows = true class, columns = predicted class, in class-index order
    assert m["confusion_matrix"] == [[tp, fn], [fp, tn]]
    assert m["num_samples"] == 8 and m["positive_class"] == 0
    for key in ("accuracy", "precision", "recall", "f1", "auroc"):
        assert type(m[key]) is float and 0.0 <= m[key] <= 1.0
    json.dumps(m)  # plain Python values only


def test_binary_metrics_with_real_as_positive():
    m = compute_metrics(binary_probs(P_FAKE), TARGETS, positive_class=1)
    # Predicted real: images 2, 6, 7; of those 6 and 7 are real. Real images: 4, 5, 6, 7.
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 4)
    # the same 16 pairs: a real image outranks a fake on P(real) exactly when the fake outranks it on P(fake)
    assert m["auroc"] == pytest.approx(13 / 16)
    assert m["confusion_matrix"] == [[3, 1], [2, 2]]  # does not depend on the positive class


def test_multiclass_metrics_are_macro_averages():
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0])
    probs = torch.nn.functional.one_hot(preds, 3).float() * 0.8 + 0.2 / 3  # rows sum to 1
    m = compute_metrics(probs, targets)
    # per class: precision 1/2, 2/3, 1/1; recall 1/2, 2/2, 1/2
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_auroc_is_none_when_only_one_class_is_present():
    m = compute_metrics(binary_probs([0.9, 0.2]), torch.tensor([0, 0]))
    assert m["auroc"] is None and m["accuracy"] == 0.5


def test_evaluate_and_predict_loader_cover_every_sample_in_order():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, -1.0], [0.5, 0.0], [-1.0, 1.0]])  # (5, 2)
    targets = torch.tensor([0, 1, 1, 0, 1])
    loader = DataLoader(TensorDataset(logits, targets), batch_size=2)  # batches of 2, 2 and 1
    identity = torch.nn.Identity()  # the "model" returns its input: the logits above
    probs, order = predict_loader(identity, loader, "cpu")
    torch.testing.assert_close(probs, logits.softmax(dim=1))
    assert torch.equal(order, targets)
    result = evaluate(identity, loader, "cpu")
    assert result["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item())
    assert result["accuracy"] == pytest.approx(4 / 5) and result["num_samples"] == 5
    smoothed = evaluate(identity, loader, "cpu", loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=0.2))
    soft_targets = 0.8 * torch.nn.functional.one_hot(targets, 2) + 0.2 / 2  # (5, 2)
    by_hand = -(soft_targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert smoothed["loss"] == pytest.approx(by_hand.item())
