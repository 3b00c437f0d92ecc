"""Training callbacks: early stopping on validation mAP, and a one-line progress bar."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from anigenre.core.metrics import average_precision


def macro_map(P: np.ndarray, Y: np.ndarray) -> float:
    aps = [average_precision(Y[:, j], P[:, j]) for j in range(Y.shape[1])]
    kept = [a for a in aps if a is not None]
    return float(np.mean(kept)) if kept else 0.0


class ValMAPEarlyStopping(keras.callbacks.Callback):
    """Stop when validation macro mAP has not improved for ``patience`` epochs, and put
    back the best epoch's weights. Loss is the wrong signal: it keeps falling while the
    ranking of rare genres, which mAP measures, gets worse."""

    def __init__(
        self, predict_val: Callable[[], np.ndarray], y_val: np.ndarray, patience: int
    ) -> None:
        super().__init__()
        self.predict_val = predict_val
        self.y_val = y_val
        self.patience = patience
        self.best = -1.0
        self.best_epoch = -1
        self.history: list[float] = []
        self._best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        score = macro_map(self.predict_val(), self.y_val)
        self.history.append(score)
        if logs is not None:
            logs["val_map"] = score
        if score > self.best + 1e-6:
            self.best, self.best_epoch = score, epoch
            self._best_weights = self.model.get_weights()
        elif epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


class ProgressBar(keras.callbacks.Callback):
    """One tqdm bar over the epochs of one head, showing loss and validation mAP (Keras's
    own is per batch). An ensemble trains its heads one after another: the bar starts again
    for each, labelled "head k/n", so its total is the epochs of one head, never the sum."""

    def __init__(self, bar, head: int = 0, heads: int = 1) -> None:
        super().__init__()
        self.bar = bar
        self.head, self.heads = head, heads
        self.losses: list[float] = []

    def on_train_begin(self, logs=None):
        if self.head > 0:
            self.bar.reset()
        if self.heads > 1:
            self.bar.set_description(f"train head {self.head + 1}/{self.heads}")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.losses.append(float(logs.get("loss", float("nan"))))
        self.bar.set_postfix(
            loss=f"{logs.get('loss', 0):.4f}", val_map=f"{logs.get('val_map', 0):.3f}"
        )
        self.bar.update(1)
