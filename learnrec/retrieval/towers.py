"""The two-tower retrieval model, in TensorFlow Recommenders.

A learner and an item are each mapped to a unit vector; their dot product (a cosine)
is the retrieval score, so an inner-product index (faiss or OpenSearch k-NN) over the
item vectors finds a learner's best candidates. Both towers embed an id *and* content,
and ids are randomly hidden during training, so a learner or item the model has never
seen still lands in the right neighbourhood from its features alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from learnrec.features.space import FeatureSpace
from learnrec.retrieval.tf_runtime import tf, tfrs


@dataclass(frozen=True)
class TowerConfig:
    """Hyperparameters shared by both towers (they go to the bundle manifest)."""

    n_users: int
    n_items: int
    n_user_features: int
    n_item_features: int
    history_length: int
    embedding_dim: int = 64
    hidden_dim: int = 128
    user_id_dropout: float = 0.5
    item_id_dropout: float = 0.1
    history_dropout: float = 0.2
    l2: float = 1e-6

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def for_space(cls, space: FeatureSpace, **hyperparameters: Any) -> TowerConfig:
        """Sizes from the vocabularies, the rest from ``hyperparameters``."""
        return cls(
            n_users=space.users.size,
            n_items=space.items.size,
            n_user_features=len(space.user_tokens),
            n_item_features=len(space.item_tokens),
            history_length=space.history_length,
            **hyperparameters,
        )


def _id_dropout(indices: tf.Tensor, rate: float, training: bool | None) -> tf.Tensor:
    """Replace ids by 'unknown' (0) at random, teaching the tower to rely on content."""
    if not training or rate <= 0:
        return indices
    keep = tf.random.uniform(tf.shape(indices)) >= rate
    return tf.where(keep, indices, tf.zeros_like(indices))


def _head_layers(config: TowerConfig) -> tuple[Any, Any]:
    """The layers after the inputs are joined: hidden ReLU (or none), then projection.

    ``hidden_dim`` 0 gives a linear tower, which small datasets overfit less.
    """
    hidden = (
        tf.keras.layers.Dense(config.hidden_dim, activation="relu", name="hidden")
        if config.hidden_dim > 0
        else tf.keras.layers.Identity(name="hidden")
    )
    return hidden, tf.keras.layers.Dense(config.embedding_dim, name="out")


class UserTower(tf.keras.Model):  # type: ignore[misc]  # TF is untyped
    """Learner -> unit vector.

    Inputs: ``user_idx`` [B] int64, ``history`` [B, H] int64 item indices (0 = padding),
    ``user_features`` [B, U] float32 (declared profile, multi-hot). Output [B, D].
    The history is a bag (mean of item embeddings): what a learner did says more about
    them than their id, and it is what lets the next event change the next
    recommendation without retraining.
    """

    def __init__(self, config: TowerConfig) -> None:
        super().__init__(name="user_tower")
        reg = tf.keras.regularizers.l2(config.l2)
        self.config = config
        self.user_embedding = tf.keras.layers.Embedding(
            config.n_users, config.embedding_dim, embeddings_regularizer=reg, name="user_id"
        )
        self.history_embedding = tf.keras.layers.Embedding(
            config.n_items, config.embedding_dim, embeddings_regularizer=reg, name="history"
        )
        self.profile = tf.keras.layers.Dense(config.embedding_dim, use_bias=False, name="profile")
        self.hidden, self.out = _head_layers(config)

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        user_idx = _id_dropout(inputs["user_idx"], self.config.user_id_dropout, training)
        history = inputs["history"]
        mask = tf.cast(history > 0, tf.float32)[..., None]
        if training and self.config.history_dropout > 0:
            # Hiding some of the history stops the tower memorising exact item sets,
            # the way a small dataset otherwise lets it.
            keep = tf.random.uniform(tf.shape(mask)) >= self.config.history_dropout
            mask = mask * tf.cast(keep, tf.float32)
        summed = tf.reduce_sum(self.history_embedding(history) * mask, axis=1)
        count = tf.reduce_sum(mask, axis=1)
        history_mean = summed / tf.maximum(count, 1.0)
        # log(1 + n) tells the tower how much to trust the history against the profile.
        # (Spelled out: tf2onnx emits Log1p, which onnxruntime has no kernel for.)
        history_size = tf.math.log(1.0 + count)
        x = tf.concat(
            [
                self.user_embedding(user_idx),
                history_mean,
                self.profile(inputs["user_features"]),
                history_size,
            ],
            axis=1,
        )
        return tf.math.l2_normalize(self.out(self.hidden(x)), axis=1)


class ItemTower(tf.keras.Model):  # type: ignore[misc]  # TF is untyped
    """Item -> unit vector.

    Inputs: ``item_idx`` [B] int64, ``item_features`` [B, I] float32 (topics, tags,
    level, format, multi-hot). Output [B, D].
    """

    def __init__(self, config: TowerConfig) -> None:
        super().__init__(name="item_tower")
        reg = tf.keras.regularizers.l2(config.l2)
        self.config = config
        self.item_embedding = tf.keras.layers.Embedding(
            config.n_items, config.embedding_dim, embeddings_regularizer=reg, name="item_id"
        )
        self.content = tf.keras.layers.Dense(config.embedding_dim, use_bias=False, name="content")
        self.hidden, self.out = _head_layers(config)

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        item_idx = _id_dropout(inputs["item_idx"], self.config.item_id_dropout, training)
        x = tf.concat(
            [self.item_embedding(item_idx), self.content(inputs["item_features"])], axis=1
        )
        return tf.math.l2_normalize(self.out(self.hidden(x)), axis=1)


class TwoTowerModel(tfrs.Model):  # type: ignore[misc]  # TF is untyped
    """Both towers under TFRS's retrieval task: in-batch softmax over the batch's items.

    The other positives in a batch are the negatives. Popular items appear in many
    batches and would be punished for it, so the logits are corrected by each item's
    sampling probability (logQ correction) when ``item_probability`` is given.
    """

    def __init__(self, config: TowerConfig, temperature: float = 0.05) -> None:
        super().__init__()
        self.user_tower = UserTower(config)
        self.item_tower = ItemTower(config)
        self.task = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=True)

    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        users = self.user_tower(
            {k: inputs[k] for k in ("user_idx", "history", "user_features")}, training=training
        )
        items = self.item_tower(
            {k: inputs[k] for k in ("item_idx", "item_features")}, training=training
        )
        return self.task(
            users,
            items,
            compute_metrics=False,
            candidate_sampling_probability=inputs.get("item_probability"),
            candidate_ids=inputs["item_key"],
        )
