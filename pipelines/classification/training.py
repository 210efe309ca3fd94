"""Training loop: ``train_one_epoch`` / ``predict_logits`` / a thin driver :func:`fit`.

The learning rate warms up, then follows a cosine whose clock is whichever runs out first, the
epoch budget or the time budget, so a ``--minutes`` cap still ends with a low learning rate.
The weights kept are those of the best validation epoch, scored as training is weighted: with
``balance_classes`` by balanced accuracy (the mean of per-class recalls), otherwise by plain
accuracy, then by lower loss. Plain accuracy on 90 "good" and 10 "defect" images prefers an epoch
that calls everything "good" (90 %) over one that finds the defects at one miss (89 %); the
balanced score keeps the latter. Training stops early when the score has not improved for
``patience_epochs``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pipelines.classification.augment import AUGMENTATIONS
from pipelines.classification.engines import ConvNeXtConfig
from pipelines.classification.preprocess import to_model_input
from pipelines.errors import ModelError
from pipelines.progress import Progress, ProgressCallback, ignore_progress

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5


@dataclass
class FitResult:
    """Outcome of :func:`fit`; ``state_dict`` holds the kept (best) weights on CPU."""

    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int
    steps_run: int
    stop_reason: str
    train_seconds: float


def autocast_context(device: torch.device) -> Any:
    """bf16 autocast on CUDA where supported (fp16 otherwise); nothing on CPU."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def predict_logits(
    model: torch.nn.Module,
    images: torch.Tensor,
    config: ConvNeXtConfig,
    device: torch.device,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Logits ``(N, n_classes)`` float32 on CPU for ``images`` ``(N, 1, S, S)`` in [0, 1]."""
    model.eval()
    outputs = []
    step = batch_size or max(config.batch_size, 32)
    with torch.inference_mode(), autocast_context(device):
        for start in range(0, images.shape[0], step):
            batch = images[start : start + step].to(device)
            logits = model(to_model_input(batch, config.channel_mean, config.channel_std))
            outputs.append(logits.float().cpu())
    if not outputs:
        return torch.empty(0, 0)
    return torch.cat(outputs)


def learning_rate_factor(progress_fraction: float, warmup_fraction: float) -> float:
    """Linear warm-up to 1, then cosine to 0, over a run's progress in [0, 1]."""
    fraction = min(1.0, max(0.0, progress_fraction))
    if fraction < warmup_fraction:
        return max(fraction / warmup_fraction, 0.01)
    span = 1.0 - warmup_fraction
    return 0.5 * (1.0 + math.cos(math.pi * (fraction - warmup_fraction) / span)) if span else 1.0


def validation_scores(
    logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None
) -> dict[str, float]:
    """Loss (class-weighted like training when ``class_weights`` is given), accuracy and
    balanced accuracy (mean recall over the classes present) of ``logits`` on ``labels``."""
    correct = (logits.argmax(1) == labels).float()
    present = torch.unique(labels)
    recalls = torch.stack([correct[labels == k].mean() for k in present])
    weight = None if class_weights is None else class_weights.to(logits.device)
    return {
        "val_loss": float(F.cross_entropy(logits, labels, weight=weight)),
        "val_accuracy": float(correct.mean()),
        "val_balanced_accuracy": float(recalls.mean()),
    }


def epoch_key(scores: dict[str, float], balanced: bool) -> tuple[float, float]:
    """Order of validation epochs: the score training aims at first, then lower loss."""
    accuracy = scores["val_balanced_accuracy"] if balanced else scores["val_accuracy"]
    return accuracy, -scores["val_loss"]


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: list[torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: ConvNeXtConfig,
    device: torch.device,
    generator: torch.Generator,
    on_step: Callable[[float], bool],
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One pass over ``batches`` (index tensors); returns the mean loss.

    ``on_step(loss)`` runs after each step (learning rate, progress, time budget) and returns
    False to stop the epoch early. A non-finite loss raises :class:`FloatingPointError`.
    """
    augment = AUGMENTATIONS[config.augmentation]
    model.train()
    losses = []
    for indices in batches:
        batch = augment(images[indices].to(device), generator)
        target = labels[indices].to(device)
        with autocast_context(device):
            logits = model(to_model_input(batch, config.channel_mean, config.channel_std))
            loss = loss_fn(logits.float(), target)
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite loss")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        losses.append(float(loss.detach()))
        if not on_step(losses[-1]):
            break
    return float(np.mean(losses)) if losses else math.nan


def _class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, mean 1, so a rare class counts as much as a common one."""
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    weights = counts.sum() / (n_classes * counts)
    return weights / weights.mean()


def fit(
    model: torch.nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    val_images: torch.Tensor,
    val_labels: torch.Tensor,
    config: ConvNeXtConfig,
    *,
    device: torch.device,
    max_seconds: float | None,
    progress: ProgressCallback | None = None,
) -> FitResult:
    """Train ``model`` in place and return the best weights and the training curve.

    ``train_images``/``val_images``: ``(N, 1, S, S)`` float32 in [0, 1]; labels ``(N,)`` int64.
    An empty validation set trains for the whole budget and keeps the last weights.
    """
    callback = progress or ignore_progress
    n_classes = (
        int(model.num_classes) if hasattr(model, "num_classes") else int(train_labels.max()) + 1
    )
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    # the (small, preprocessed) training set lives on the device: no copy per batch
    train_images, train_labels = train_images.to(device), train_labels.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    weights = _class_weights(train_labels, n_classes).to(device) if config.balance_classes else None

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits, target, weight=weights, label_smoothing=config.label_smoothing
        )

    scaler = None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        scaler = torch.amp.GradScaler("cuda")
    n_train = train_images.shape[0]
    batch_size = min(config.batch_size, n_train)
    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = config.epochs * steps_per_epoch
    has_val = val_images.shape[0] > 0

    started = time.monotonic()
    state = {"step": 0, "last_emit": -math.inf, "epoch": 0, "out_of_time": False}
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"key": None, "epoch": 0, "state": None}
    last_val: dict[str, float] = {}

    def run_fraction() -> float:
        by_steps = state["step"] / total_steps
        if max_seconds is None:
            return by_steps
        return max(by_steps, (time.monotonic() - started) / max_seconds)

    def eta_s() -> float | None:
        elapsed = time.monotonic() - started
        if state["step"] == 0:
            return max_seconds
        by_steps = elapsed / state["step"] * (total_steps - state["step"])
        return by_steps if max_seconds is None else min(by_steps, max(0.0, max_seconds - elapsed))

    def emit(loss: float | None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - state["last_emit"] < PROGRESS_INTERVAL_S:
            return
        state["last_emit"] = now
        metrics = {"epoch": float(state["epoch"]), "step": float(state["step"])}
        if loss is not None:
            metrics["loss"] = loss
        metrics.update(last_val)
        callback(
            Progress(
                stage="train",
                done=state["step"],
                total=total_steps,
                metrics=metrics,
                eta_s=eta_s(),
                message=f"epoch {state['epoch']}/{config.epochs}",
            )
        )

    def on_step(loss: float) -> bool:
        state["step"] += 1
        factor = learning_rate_factor(run_fraction(), config.warmup_fraction)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * factor
        emit(loss)
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            state["out_of_time"] = True
            return False
        return True

    for group in optimizer.param_groups:
        group["lr"] = config.learning_rate * learning_rate_factor(0.0, config.warmup_fraction)
    emit(None, force=True)
    stop_reason = "epochs"
    for epoch in range(1, config.epochs + 1):
        state["epoch"] = epoch
        order = torch.randperm(n_train, generator=generator)
        batches = list(order.split(batch_size))
        try:
            train_loss = train_one_epoch(
                model, optimizer, batches, train_images, train_labels, loss_fn,
                config, device, generator, on_step, scaler,
            )  # fmt: skip
        except FloatingPointError:
            if best["state"] is None:
                raise ModelError(
                    f"training diverged (loss is not a number) in epoch {epoch}; lower the "
                    "learning_rate and train again"
                ) from None
            log.warning("non-finite loss in epoch %d; keeping the best earlier weights", epoch)
            stop_reason = "non-finite loss"
            break
        record = {
            "epoch": float(epoch),
            "train_loss": train_loss,
            "seconds": time.monotonic() - started,
        }
        if has_val:
            logits = predict_logits(model, val_images, config, device)
            scores = validation_scores(logits, val_labels.cpu(), weights)
            record.update(scores)
            last_val.update(scores)
            key = epoch_key(scores, config.balance_classes)
            if best["key"] is None or key > best["key"]:
                best.update(key=key, epoch=epoch, state=_cpu_copy(model))
        history.append(record)
        emit(train_loss, force=True)
        if state["out_of_time"]:
            stop_reason = "time limit"
            break
        if has_val and epoch - best["epoch"] >= config.patience_epochs:
            stop_reason = "early stopping"
            break
    if best["state"] is None:
        best.update(epoch=state["epoch"], state=_cpu_copy(model))
    seconds = time.monotonic() - started
    log.info(
        "trained %d epochs (%d steps) in %.1f s, stopped by %s; best epoch %d",
        state["epoch"], state["step"], seconds, stop_reason, best["epoch"],
    )  # fmt: skip
    return FitResult(
        state_dict=best["state"],
        history=history,
        best_epoch=best["epoch"],
        epochs_run=state["epoch"],
        steps_run=state["step"],
        stop_reason=stop_reason,
        train_seconds=seconds,
    )


def _cpu_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
