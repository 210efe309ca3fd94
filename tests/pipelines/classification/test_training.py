"""The training loop: schedule, early stopping, time cap, progress events, seeds, divergence."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from pipelines.classification.engines import ConvNeXtConfig
from pipelines.classification.training import (
    epoch_key,
    fit,
    learning_rate_factor,
    validation_scores,
)
from pipelines.errors import Cancelled, ModelError
from pipelines.progress import Progress

CPU = torch.device("cpu")


def _data(n: int = 12, size_px: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Two trivially separable classes: dark and bright images."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = (
        torch.rand(n, 1, size_px, size_px, generator=generator) * 0.3
        + labels.view(-1, 1, 1, 1) * 0.6
    )
    return images, labels


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("convnext_atto", pretrained=False, num_classes=2)


def _config(**overrides) -> ConvNeXtConfig:
    values = {"input_size_px": 32, "epochs": 2, "batch_size": 6, "max_minutes": None, **overrides}
    return ConvNeXtConfig(**values)


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    assert learning_rate_factor(0.0, 0.1) == pytest.approx(0.01)
    assert learning_rate_factor(0.05, 0.1) == pytest.approx(0.5)
    assert learning_rate_factor(0.1, 0.1) == pytest.approx(1.0)
    assert learning_rate_factor(0.55, 0.1) == pytest.approx(0.5)
    assert learning_rate_factor(1.0, 0.1) == pytest.approx(0.0)
    assert learning_rate_factor(2.0, 0.0) == pytest.approx(0.0)


def test_progress_reports_epoch_step_loss_val_accuracy_and_eta() -> None:
    images, labels = _data()
    events: list[Progress] = []
    result = fit(
        _model(), images[:8], labels[:8], images[8:], labels[8:], _config(),
        device=CPU, max_seconds=None, progress=events.append,
    )  # fmt: skip
    assert result.epochs_run == 2 and result.steps_run == 4 and result.stop_reason == "epochs"
    last = events[-1]
    assert last.stage == "train" and last.done == 4 and last.total == 4
    assert {"epoch", "step", "loss", "val_accuracy", "val_balanced_accuracy", "val_loss"} <= set(
        last.metrics
    )
    assert last.metrics["epoch"] == 2 and last.eta_s == pytest.approx(0.0, abs=1e-6)
    assert [record["epoch"] for record in result.history] == [1.0, 2.0]
    assert all(math.isfinite(record["train_loss"]) for record in result.history)


def test_kept_epoch_is_scored_as_training_is_weighted() -> None:
    """90 "good" and 10 "defect" validation images: an epoch calling everything "good" has the
    higher plain accuracy (90 % against 89 %), but with balanced classes the epoch that finds
    the defects is kept."""
    labels = torch.tensor([0] * 90 + [1] * 10)
    all_good = torch.tensor([[2.0, 0.0]]).repeat(100, 1)
    finds_defects = torch.where(labels[:, None] == 1, torch.tensor([0.0, 2.0]), all_good)
    finds_defects[:11] = torch.tensor([0.0, 2.0])  # 11 good images taken for defects
    weights = torch.tensor([10 / 18, 10 / 2])
    lazy = validation_scores(all_good, labels, weights)
    keen = validation_scores(finds_defects, labels, weights)
    assert lazy["val_accuracy"] == pytest.approx(0.9) and lazy["val_balanced_accuracy"] == 0.5
    assert keen["val_accuracy"] == pytest.approx(0.89)
    assert keen["val_balanced_accuracy"] == pytest.approx((79 / 90 + 1.0) / 2)
    assert epoch_key(keen, balanced=True) > epoch_key(lazy, balanced=True)
    assert epoch_key(lazy, balanced=False) > epoch_key(keen, balanced=False)
    # the loss that breaks ties is weighted as in training: missing every defect costs more
    assert keen["val_loss"] < lazy["val_loss"]


def test_same_seed_same_weights() -> None:
    images, labels = _data()
    runs = [
        fit(_model(), images[:8], labels[:8], images[8:], labels[8:], _config(epochs=1),
            device=CPU, max_seconds=None)
        for _ in range(2)
    ]  # fmt: skip
    for key, value in runs[0].state_dict.items():
        torch.testing.assert_close(value, runs[1].state_dict[key], rtol=0, atol=0)


def test_early_stopping_and_time_cap() -> None:
    images, labels = _data()
    stopped = fit(
        _model(), images[:8], labels[:8], images[8:], labels[8:],
        _config(epochs=50, patience_epochs=1, learning_rate=1e-12), device=CPU, max_seconds=None,
    )  # fmt: skip
    assert stopped.stop_reason == "early stopping" and stopped.epochs_run < 50
    assert (stopped.best_epoch, stopped.epochs_run) == (1, 2)  # weights frozen by the tiny rate
    capped = fit(
        _model(), images[:8], labels[:8], images[8:], labels[8:], _config(epochs=1000),
        device=CPU, max_seconds=1e-3,
    )  # fmt: skip
    assert capped.stop_reason == "time limit" and capped.steps_run == 1


def test_without_validation_keeps_the_last_weights() -> None:
    images, labels = _data()
    empty = images[:0]
    result = fit(
        _model(), images, labels, empty, labels[:0], _config(), device=CPU, max_seconds=None
    )
    assert result.best_epoch == 2 and "val_accuracy" not in result.history[-1]


def test_non_finite_loss_is_a_clear_error() -> None:
    images, labels = _data()
    model = _model()
    with torch.no_grad():
        model.head.fc.weight.fill_(float("nan"))
    with pytest.raises(ModelError, match=r"diverged .* lower the learning_rate"):
        fit(
            model,
            images[:8],
            labels[:8],
            images[8:],
            labels[8:],
            _config(),
            device=CPU,
            max_seconds=None,
        )


def test_a_callback_can_cancel_training() -> None:
    images, labels = _data()

    def cancel_after_first_step(event: Progress) -> None:
        if event.done >= 1:
            raise Cancelled("stopped by the user")

    with pytest.raises(Cancelled):
        fit(
            _model(), images[:8], labels[:8], images[8:], labels[8:], _config(),
            device=CPU, max_seconds=None, progress=cancel_after_first_step,
        )  # fmt: skip
