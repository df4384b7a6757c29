"""A real model bundle of twelve items, written in well under a second without TensorFlow.

Every file is the one training writes, through the same writers: the feature space, the
catalog and its line index, the item statistics, the item embeddings, the faiss index and
the manifest. Only the towers and the ranker are made by hand instead of learned:

- The towers are ONNX graphs built with ``onnx.helper`` with the exported towers' inputs
  and output (embedding lookups, a sum over the history, a projection of the multi-hot
  features, L2 normalisation), so the geometry is chosen rather than learned: each topic
  is an axis, and each item leans off its topic's axis towards a shared fourth axis by
  the angle in :data:`ANGLES`. A learner interested in one topic therefore retrieves that
  topic's items in order of increasing angle, and a learner the model knows nothing about
  (only the fourth axis) retrieves items in order of decreasing angle.
- The ranker is XGBoost trained natively on a few hundred rows in which the label grows
  with one feature only, under a monotone constraint on it: its order over any
  candidates is that feature's order, ties kept in retrieval order.

That is what lets the recommender's tests state exact lists instead of properties.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from learnrec.bundle import CATALOG_FILE, EMBEDDINGS_FILE, SPACE_FILE, STATS_FILE, write_manifest
from learnrec.features.ranking import FEATURE_NAMES, build_item_stats
from learnrec.features.space import FeatureSpace, item_tokens, learner_tokens
from learnrec.ranking.model import Ranker
from learnrec.retrieval.onnx_runtime import ITEM_TOWER_FILE, OUTPUT_NAME, USER_TOWER_FILE
from learnrec.schemas import ContentItem, Learner
from learnrec.serving.bundle_index import write_index
from learnrec.serving.catalog import write_catalog

TOPICS = ("python", "sql", "design")
MISC = len(TOPICS)  # the shared axis every item leans towards
DIM = len(TOPICS) + 1
# Tower bias along the shared axis: a learner or item with no signal still has a direction.
BIAS = 0.02
# History items pull the learner's vector by this share of their own vectors.
HISTORY_WEIGHT = 0.5


def _item(cid: str, title: str, topic: str, level: int, *prerequisites: str) -> ContentItem:
    return ContentItem(
        content_id=cid, title=title, topics=[topic], level=level, prerequisites=list(prerequisites)
    )


CATALOG: tuple[ContentItem, ...] = (
    _item("py-intro", "Python basics", "python", 1),
    _item("py-data", "Data with Python", "python", 2, "py-intro"),
    _item("py-web", "Web apps in Python", "python", 2, "py-intro"),
    _item("py-adv", "Advanced Python", "python", 3, "py-data"),
    _item("sql-intro", "SQL basics", "sql", 1),
    _item("sql-joins", "SQL joins", "sql", 2, "sql-intro"),
    _item("sql-tuning", "Query tuning", "sql", 3, "sql-joins"),
    _item("ux-intro", "Design basics", "design", 1),
    _item("ux-research", "User research", "design", 2),
    # In the catalog, but no learner engaged with them: new items to the model.
    _item("py-new", "Python testing", "python", 2),
    _item("ux-new", "Design systems", "design", 2),
    _item("sql-new", "Window functions", "sql", 2, "sql-intro"),
)
TITLES = {item.content_id: item.title for item in CATALOG}

# Radians off the topic's axis towards the shared one; all distinct, so no two items tie.
ANGLES: dict[str, float] = {
    "py-intro": 0.10,
    "py-data": 0.20,
    "py-web": 0.30,
    "py-adv": 0.40,
    "sql-intro": 0.12,
    "sql-joins": 0.22,
    "sql-tuning": 0.32,
    "ux-intro": 0.14,
    "ux-research": 0.24,
    "py-new": 0.85,
    "ux-new": 0.34,
    "sql-new": 0.80,
}

# The learners of the training data and the items each engaged with. Popularity (learners
# per item): py-intro 6, sql-intro 4, py-data 3, sql-joins 2, ux-intro 2, then 1, and 0 for
# the new items.
ENGAGEMENT: dict[str, tuple[str, ...]] = {
    "ana": ("py-intro", "py-data", "py-adv"),
    "ben": ("py-intro", "py-data", "py-web"),
    "cy": ("py-intro", "py-data", "sql-intro"),
    "dee": ("py-intro", "sql-intro", "sql-joins"),
    "eli": ("py-intro", "sql-intro", "sql-joins", "sql-tuning"),
    "fay": ("py-intro", "sql-intro", "ux-intro"),
    "gus": ("ux-intro", "ux-research"),
}
PROFILES: dict[str, Learner] = {
    "ana": Learner(user_id="ana", level=3, interests=["python"]),
    "dee": Learner(user_id="dee", level=2, interests=["sql"], goals=["analyst"]),
    "gus": Learner(user_id="gus", level=1, interests=["design"]),
}


def item_vector(content_id: str) -> np.ndarray:
    """The unit vector the item tower gives a bundle item."""
    item = next(i for i in CATALOG if i.content_id == content_id)
    vector = np.zeros(DIM)
    vector[TOPICS.index(item.topics[0])] = math.cos(ANGLES[content_id])
    vector[MISC] = math.sin(ANGLES[content_id])
    return vector


def _token_projection(vocabulary: list[str]) -> np.ndarray:
    """[tokens, D]: each ``topic:<t>`` token onto its topic's axis, other tokens nowhere."""
    out = np.zeros((len(vocabulary), DIM), dtype=np.float32)
    for row, token in enumerate(vocabulary):
        kind, _, value = token.partition(":")
        if kind == "topic" and value in TOPICS:
            out[row, TOPICS.index(value)] = 1.0
    return out


def _tower(
    name: str,
    path: Path,
    lookups: list[tuple[str, np.ndarray, int]],
    features: tuple[str, np.ndarray],
) -> None:
    """One tower: embedding lookups + features @ projection + bias, L2-normalised.

    ``lookups`` are (input name, table, input rank); a rank 2 input is summed over its
    second axis, which is how the history of item indices (0 = padding, a zero row)
    becomes one vector.
    """
    nodes: list[onnx.NodeProto] = []
    inputs: list[onnx.ValueInfoProto] = []
    initializers: list[onnx.TensorProto] = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "sum_axis"),
        numpy_helper.from_array(_bias(), "bias"),
    ]
    parts: list[str] = []
    for input_name, table, rank in lookups:
        shape: list[str | int] = ["batch"] if rank == 1 else ["batch", "length"]
        inputs.append(helper.make_tensor_value_info(input_name, TensorProto.INT64, shape))
        initializers.append(numpy_helper.from_array(table.astype(np.float32), f"{input_name}_t"))
        looked_up = f"{input_name}_e"
        nodes.append(helper.make_node("Gather", [f"{input_name}_t", input_name], [looked_up]))
        if rank == 2:
            nodes.append(
                helper.make_node(
                    "ReduceSum", [looked_up, "sum_axis"], [f"{input_name}_s"], keepdims=0
                )
            )
            looked_up = f"{input_name}_s"
        parts.append(looked_up)
    feature_name, projection = features
    inputs.append(
        helper.make_tensor_value_info(
            feature_name, TensorProto.FLOAT, ["batch", projection.shape[0]]
        )
    )
    initializers.append(numpy_helper.from_array(projection.astype(np.float32), "projection"))
    nodes.append(helper.make_node("MatMul", [feature_name, "projection"], ["projected"]))
    parts += ["projected", "bias"]
    total = parts[0]
    for step, part in enumerate(parts[1:]):
        nodes.append(helper.make_node("Add", [total, part], [f"sum{step}"]))
        total = f"sum{step}"
    nodes.append(helper.make_node("LpNormalization", [total], [OUTPUT_NAME], axis=1, p=2))
    output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", DIM])
    graph = helper.make_graph(nodes, name, inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _bias() -> np.ndarray:
    bias = np.zeros(DIM, dtype=np.float32)
    bias[MISC] = BIAS
    return bias


# The range of each feature a ranker may order by, over this bundle's candidates.
RANKER_RANGES = {"retrieval_score": (-0.2, 1.0), "log_popularity": (0.0, 2.0)}


def _train_ranker(feature: str, seed: int = 0) -> Ranker:
    """A ranker whose scores rise with ``feature`` alone (monotone constraint).

    Every other feature is missing in its training rows, so no tree splits on them; the
    rows span the feature's range in this bundle, so its steps fall among its values.
    """
    low, high = RANKER_RANGES[feature]
    import xgboost as xgb

    column = FEATURE_NAMES.index(feature)
    rng = np.random.default_rng(seed)
    rows, per_group = 400, 20
    features = np.full((rows, len(FEATURE_NAMES)), np.nan, dtype=np.float32)
    values = rng.uniform(low, high, rows).astype(np.float32)
    features[:, column] = values
    labels = np.digitize(values, np.linspace(low, high, 9)[1:-1]).astype(np.float32)
    data = xgb.DMatrix(features, labels, feature_names=list(FEATURE_NAMES))
    data.set_group([per_group] * (rows // per_group))
    constraints = tuple(1 if c == column else 0 for c in range(len(FEATURE_NAMES)))
    params = {
        "objective": "rank:pairwise",
        "monotone_constraints": str(constraints).replace(" ", ""),
        "tree_method": "hist",
        "max_depth": 3,
        "eta": 0.3,
        "nthread": 1,
        "seed": seed,
    }
    return Ranker.from_booster(xgb.train(params, data, num_boost_round=30))


def write_bundle(
    directory: Path, version: str = "tiny-1", ranker: str | None = "retrieval_score"
) -> Path:
    """Write the bundle into ``directory`` (created) and return it.

    ``ranker``: the feature the ranker orders by (a name in FEATURE_NAMES), or None for
    a bundle without a ranker.
    """
    directory.mkdir(parents=True)
    write_catalog(CATALOG, directory / CATALOG_FILE)
    tokens = [item_tokens(i.topics, i.tags, i.level) for i in CATALOG]
    profile_tokens = {
        user: learner_tokens(p.interests, p.goals, p.level) for user, p in PROFILES.items()
    }
    space = FeatureSpace.build(
        user_ids=ENGAGEMENT,
        item_ids=[i.content_id for i in CATALOG],
        user_token_lists=[*profile_tokens.values(), [f"topic:{t}" for t in TOPICS]],
        item_token_lists=tokens,
        history_length=8,
    )
    space.save(directory / SPACE_FILE)

    # Item tower: lookup rows chosen so that trained items come out exactly at their
    # designed vectors; an item the model never saw (row 0) gets its topic's axis.
    item_projection = _token_projection(space.item_tokens.keys)
    item_features = space.encode_item_features(tokens)
    designed = np.vstack([np.zeros(DIM), *(item_vector(i.content_id) for i in CATALOG)])
    item_table = designed.copy()
    item_table[1:] -= item_features @ item_projection + _bias()
    _tower(
        "item_tower",
        directory / ITEM_TOWER_FILE,
        [("item_idx", item_table, 1)],
        ("item_features", item_projection),
    )
    np.save(directory / EMBEDDINGS_FILE, designed.astype(np.float32))

    # User tower: a known learner's row is the sum of the vectors of the items they engaged
    # with, as training would pull it; history and declared interests add to it.
    user_table = np.zeros((space.users.size, DIM))
    for user, items in ENGAGEMENT.items():
        user_table[space.users.index(user)] = sum(designed[space.items.index(i)] for i in items)
    _tower(
        "user_tower",
        directory / USER_TOWER_FILE,
        [("user_idx", user_table, 1), ("history", designed * HISTORY_WEIGHT, 2)],
        ("user_features", _token_projection(space.user_tokens.keys)),
    )

    stats = build_item_stats(
        space,
        item_tokens=tokens,
        item_levels=[float(i.level or math.nan) for i in CATALOG],
        item_prerequisites=[i.prerequisites for i in CATALOG],
        interactions=[(user, item) for user, items in ENGAGEMENT.items() for item in items],
    )
    stats.save(directory / STATS_FILE)
    if ranker is not None:
        _train_ranker(ranker).save(directory, {"orders_by": ranker})
    write_index(directory)
    write_manifest(directory, version, parameters={}, metrics={}, data={}, commit="tiny")
    return directory
