"""Train the two-tower model on interactions and write its part of the model bundle.

Writes the retrieval part of a bundle into the output folder (file names: the layout in
:mod:`learnrec.bundle`): the two ONNX towers, each checked against TensorFlow, the
feature space, the item embeddings [N+1, D] (row 0 is the unknown item, all zeros), the
item stats, the serving catalog with its line index, the faiss index, and a summary
(parameters, parity figures, timings).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from learnrec.bundle import BundleLayout
from learnrec.data.dataset import Dataset, content_items
from learnrec.features.space import FeatureSpace
from learnrec.retrieval.onnx_runtime import ITEM_INPUTS, USER_INPUTS, OnnxTowers
from learnrec.serving.bundle_index import write_index
from learnrec.serving.catalog import write_catalog
from learnrec.training.inputs import (
    Histories,
    build_space,
    encode_catalog,
    item_stats_for,
    profile_tokens,
)


@dataclass(frozen=True)
class RetrievalParams:
    """Hyperparameters of the retrieval job (SageMaker passes them as arguments)."""

    embedding_dim: int = 64
    hidden_dim: int = 128
    epochs: int = 30
    batch_size: int = 512
    learning_rate: float = 0.003
    temperature: float = 0.05
    user_id_dropout: float = 0.9
    item_id_dropout: float = 0.1
    history_dropout: float = 0.2
    history_length: int = 50
    validation_fraction: float = 0.1
    patience: int = 3
    logq_correction: bool = True
    l2: float = 1e-6
    seed: int = 42


def training_examples(
    space: FeatureSpace,
    interactions: pd.DataFrame,
    histories: Histories,
    profiles: dict[str, list[str]],
    item_features: np.ndarray,
) -> dict[str, np.ndarray]:
    """One example per interaction; its history is the learner's *other* items.

    Leaving the target out of its own history is what makes the user tower predict
    the next item rather than recall the ones it was shown. Shapes: ``history``
    [E, H], ``user_features`` [E, U], ``item_features`` [E, I], the rest [E].
    """
    h = space.history_length
    user_idx, item_idx, history_rows, feature_rows = [], [], [], []
    for user, items in histories.items.items():
        encoded = space.items.lookup(items)
        n = len(encoded)
        for j in range(n):
            others = np.delete(encoded, j)[-h:]
            row = np.zeros(h, dtype=np.int64)
            row[: len(others)] = others
            history_rows.append(row)
            item_idx.append(encoded[j])
            user_idx.append(space.users.index(user))
        feature_rows.extend([profiles.get(user, [])] * n)
    items_arr = np.asarray(item_idx, dtype=np.int64)
    counts = np.bincount(items_arr, minlength=space.items.size).astype(np.float64)
    return {
        "user_idx": np.asarray(user_idx, dtype=np.int64),
        "history": np.stack(history_rows) if history_rows else np.zeros((0, h), np.int64),
        "user_features": space.encode_user_features(feature_rows),
        "item_idx": items_arr,
        "item_key": items_arr.copy(),
        "item_features": item_features[items_arr - 1],
        "item_probability": (counts[items_arr] / max(1.0, counts.sum())).astype(np.float32),
    }


def train_retrieval(
    dataset: Dataset,
    interactions: pd.DataFrame,
    out_dir: Path,
    params: RetrievalParams | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train on ``interactions`` (with ``dataset``'s catalog and profiles), export, check."""
    from learnrec.retrieval.export import check_input_names, export_tower
    from learnrec.retrieval.tf_runtime import tf
    from learnrec.retrieval.towers import TowerConfig, TwoTowerModel

    params = params or RetrievalParams()
    if interactions.empty:
        raise ValueError("no interactions to train on")
    started = time.perf_counter()
    tf.keras.utils.set_random_seed(params.seed)
    space = build_space(dataset, interactions, params.history_length)
    histories = Histories.of(interactions)
    profiles = profile_tokens(dataset.learners)
    catalog = encode_catalog(space, dataset)
    examples = training_examples(space, interactions, histories, profiles, catalog["item_features"])
    if not params.logq_correction:
        examples.pop("item_probability")

    config = TowerConfig.for_space(
        space,
        embedding_dim=params.embedding_dim,
        hidden_dim=params.hidden_dim,
        user_id_dropout=params.user_id_dropout,
        item_id_dropout=params.item_id_dropout,
        history_dropout=params.history_dropout,
        l2=params.l2,
    )
    model = TwoTowerModel(config, temperature=params.temperature)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=params.learning_rate))
    n_examples = len(examples["item_idx"])
    train_part, validation_part = _holdout(examples, params.validation_fraction, params.seed)
    n_train = len(train_part["item_idx"])
    batches = (
        tf.data.Dataset.from_tensor_slices(train_part)
        .shuffle(n_train, seed=params.seed, reshuffle_each_iteration=True)
        .batch(params.batch_size, drop_remainder=n_train > params.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    callbacks: list[Any] = []
    validation = None
    if validation_part is not None:
        # Small datasets are memorised within a few epochs; stop where held-out loss
        # is lowest and keep those weights.
        validation = tf.data.Dataset.from_tensor_slices(validation_part).batch(params.batch_size)
        callbacks.append(
            tf.keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=params.patience, restore_best_weights=True
            )
        )
    bar = tqdm(total=params.epochs, desc="two-tower", unit="epoch", disable=not progress)
    callbacks.append(_TqdmEpochs(bar))
    history = model.fit(
        batches, validation_data=validation, epochs=params.epochs, verbose=0, callbacks=callbacks
    )
    bar.close()
    fit_s = time.perf_counter() - started

    out_dir.mkdir(parents=True, exist_ok=True)
    layout = BundleLayout(out_dir)
    user_sample = {k: examples[k][:512] for k in USER_INPUTS}
    item_sample = {k: catalog[k][:2048] for k in ITEM_INPUTS}
    check_input_names(user_sample, item_sample)
    parity = [
        export_tower(model.user_tower, user_sample, layout.user_tower),
        export_tower(model.item_tower, item_sample, layout.item_tower),
    ]
    towers = OnnxTowers(out_dir, threads=0)
    item_vectors = towers.items_batched(catalog["item_idx"], catalog["item_features"])
    embeddings = np.vstack([np.zeros((1, item_vectors.shape[1]), np.float32), item_vectors])
    np.save(layout.embeddings, embeddings)
    space.save(layout.space)
    write_catalog(content_items(dataset.items), layout.catalog)
    write_index(out_dir)
    item_stats_for(space, dataset, interactions).save(layout.stats)
    summary = {
        "params": asdict(params),
        "tower_config": config.to_json(),
        "examples": n_examples,
        "epochs_run": len(history.history["loss"]),
        "final_loss": float(history.history["loss"][-1]),
        "best_val_loss": float(min(history.history.get("val_loss", [float("nan")]))),
        "parity": [asdict(p) for p in parity],
        "timings_s": {"fit": fit_s, "total": time.perf_counter() - started},
    }
    layout.retrieval_summary.write_text(json.dumps(summary, indent=2))
    return summary


def _holdout(
    examples: dict[str, np.ndarray], fraction: float, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """Random examples set aside to decide when to stop (None if too few to bother)."""
    n = len(examples["item_idx"])
    n_validation = int(n * fraction)
    if n_validation < 64:
        return examples, None
    order = np.random.default_rng(seed).permutation(n)
    held, kept = order[:n_validation], order[n_validation:]
    return {k: v[kept] for k, v in examples.items()}, {k: v[held] for k, v in examples.items()}


class _TqdmEpochs:
    """A Keras callback that advances a progress bar per epoch and shows the loss."""

    def __new__(cls, bar: Any) -> Any:
        from learnrec.retrieval.tf_runtime import tf

        class Callback(tf.keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                bar.set_postfix(loss=f"{(logs or {}).get('loss', float('nan')):.4f}")
                bar.update(1)

        return Callback()
