"""Human-readable offline evaluation report: a Markdown page plus PNG charts in one folder.

The report is what people look at to decide whether a model ships, so it favours
robustness over completeness: every optional key may be missing, a popularity score of 0
shows "n/a" instead of an infinite lift, and nothing here can fail a training run that
already produced good models.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import numpy.typing as npt

# Agg before pyplot: training runs on headless machines and in containers with no display.
matplotlib.use("Agg")
import matplotlib.pyplot as plt

BASELINE = "popularity"
"""Model every other model is compared with: beating it is the minimum bar to ship."""

_RANKING_ORDER = ("precision", "recall", "ndcg", "map", "coverage")
_CTR_KEYS = ("simulated_ctr", "ctr_lift_vs_popularity")
# Bookkeeping numbers that are not model quality and would only clutter the tables.
_NOT_METRICS = frozenset({"users", *_CTR_KEYS})
_MISSING = "—"

ScoreSamples = Mapping[str, Sequence[float] | npt.NDArray[Any]]
"""Model name -> scores it gave (e.g. to its top-k items); any real dtype, NaNs dropped."""


def _number(value: Any) -> float | None:
    """A finite float, or None: bools, strings, NaN and nested objects are not metric values."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    as_float = float(value)
    return as_float if math.isfinite(as_float) else None


def _models(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    models = metrics.get("models")
    if not isinstance(models, Mapping):
        return {}
    return {str(name): vals for name, vals in models.items() if isinstance(vals, Mapping)}


def _metric_columns(models: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Ranking metrics in the conventional order first, then any other numeric model keys."""
    seen: dict[str, None] = {}
    for values in models.values():
        for key, value in values.items():
            if key not in _NOT_METRICS and _number(value) is not None:
                seen.setdefault(str(key), None)

    def order(key: str) -> tuple[int, int, str]:
        base, _, k = key.partition("@")
        if base in _RANKING_ORDER and k.isdigit():
            return (0, _RANKING_ORDER.index(base), key)
        return (1, 0, "")  # stable sort keeps first-seen order for the rest

    return sorted(seen, key=order)


def _higher_is_better(key: str) -> bool:
    # Only metrics we know are "higher is better" get a bold winner; guessing for unknown
    # keys (latency, loss) would highlight the worst model.
    base, _, k = key.partition("@")
    return base in _RANKING_ORDER and k.isdigit()


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|")
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return lines


def _lift(value: float | None, baseline: float | None) -> str:
    if value is None or baseline is None or baseline == 0:
        return "n/a"
    return _pct((value - baseline) / baseline)


def _metrics_table(models: Mapping[str, Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    best: dict[str, float] = {}
    for col in columns:
        found = [v for m in models.values() if (v := _number(m.get(col))) is not None]
        if found and _higher_is_better(col):
            best[col] = max(found)
    rows: list[list[str]] = []
    for name, values in models.items():
        row = [name]
        for col in columns:
            value = _number(values.get(col))
            if value is None:
                row.append(_MISSING)
            elif col in best and value == best[col]:
                row.append(f"**{_fmt(value)}**")
            else:
                row.append(_fmt(value))
        rows.append(row)
    return _table(["model", *columns], rows)


def _lift_table(models: Mapping[str, Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    baseline = models[BASELINE]
    rows = [
        [name, *(_lift(_number(vals.get(c)), _number(baseline.get(c))) for c in columns)]
        for name, vals in models.items()
        if name != BASELINE
    ]
    return _table(["model", *columns], rows)


def _ctr_table(models: Mapping[str, Mapping[str, Any]]) -> list[str]:
    ctrs = {name: _number(vals.get("simulated_ctr")) for name, vals in models.items()}
    best = max((c for c in ctrs.values() if c is not None), default=None)
    base_ctr = ctrs.get(BASELINE)
    rows: list[list[str]] = []
    for name, vals in models.items():
        ctr = ctrs[name]
        lift = _number(vals.get("ctr_lift_vs_popularity"))
        if ctr is None and lift is None:
            continue
        ctr_text = _MISSING if ctr is None else _fmt(ctr)
        if ctr is not None and ctr == best:
            ctr_text = f"**{ctr_text}**"
        if lift is not None:
            lift_text = _pct(lift)
        elif name == BASELINE:
            lift_text = _MISSING
        else:
            lift_text = _lift(ctr, base_ctr)
        rows.append([name, ctr_text, lift_text])
    return _table(["model", "simulated CTR", "CTR lift vs popularity"], rows) if rows else []


def _dataset_lines(metrics: Mapping[str, Any]) -> list[str]:
    fields: list[tuple[str, str]] = [
        ("dataset", "Dataset"),
        ("split", "Split"),
        ("k", "k"),
        ("n_users", "Users"),
        ("n_items", "Items"),
        ("test_fraction", "Test fraction"),
        ("seed", "Seed"),
    ]
    lines: list[str] = []
    for key, label in fields:
        if key not in metrics or metrics[key] is None:
            continue
        value = metrics[key]
        number = _number(value)
        if key == "test_fraction" and number is not None:
            text = f"{number:.0%}" if number * 100 == round(number * 100) else f"{number:.2%}"
        else:
            text = str(value)
        lines.append(f"- **{label}:** {text}")
    return lines


def _timing_lines(metrics: Mapping[str, Any]) -> list[str]:
    timings = metrics.get("timings_s")
    if not isinstance(timings, Mapping):
        return []
    rows: list[list[str]] = []
    total = 0.0
    for step, seconds in timings.items():
        if step == "total":  # a measured end-to-end total beats the sum of the steps
            continue
        value = _number(seconds)
        rows.append([str(step), _MISSING if value is None else f"{value:.2f}"])
        total += value or 0.0
    if not rows:
        return []
    measured = _number(timings.get("total"))
    total = measured if measured is not None else total
    rows.append(["**total**", f"**{total:.2f}**"])
    return _table(["step", "seconds"], rows)


def _features_alone_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The ranker against each of its features used alone to order the same candidates."""
    alone = metrics.get("ranker_features_alone")
    k = metrics.get("k")
    if not isinstance(alone, Mapping) or not alone or k is None:
        return []
    metric = f"ndcg@{k}"
    ranker = _number(_models(metrics).get("two_tower_ranker", {}).get(metric))
    scored = [
        (name, str(values.get("order", "")), value)
        for name, values in alone.items()
        if isinstance(values, Mapping) and (value := _number(values.get(metric))) is not None
    ]
    scored.sort(key=lambda row: -row[2])
    rows = [[name, order, _fmt(value)] for name, order, value in scored]
    if ranker is not None:
        rows.insert(0, ["**two_tower_ranker**", "learned", f"**{_fmt(ranker)}**"])
    return _table(["ordered by", "order", metric], rows)


def _title(metrics: Mapping[str, Any]) -> str:
    dataset = metrics.get("dataset", "unknown dataset")
    details = []
    if metrics.get("split") is not None:
        details.append(f"{metrics['split']} split")
    if metrics.get("k") is not None:
        details.append(f"k={metrics['k']}")
    return f"{dataset}" + (f" ({', '.join(details)})" if details else "")


def _plot_metrics(
    path: Path,
    models: Mapping[str, Mapping[str, Any]],
    columns: Sequence[str],
    title: str,
) -> None:
    """Grouped bars: one group per metric so models are compared side by side on each."""
    names = list(models)
    x = np.arange(len(columns), dtype=np.float64)
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(columns) * max(1, len(names)) / 2), 4.5))
    try:
        top = 0.0
        for i, name in enumerate(names):
            values = [_number(models[name].get(c)) for c in columns]
            heights = [np.nan if v is None else v for v in values]
            bars = ax.bar(x + (i - (len(names) - 1) / 2) * width, heights, width, label=name)
            ax.bar_label(
                bars,
                labels=["" if v is None else f"{v:.3f}" for v in values],
                fontsize=7,
                padding=2,
                rotation=90 if len(names) > 3 else 0,
            )
            top = max([top, *(v for v in values if v is not None)])
        ax.set_xticks(x, list(columns))
        ax.set_ylim(0, top * 1.2 if top > 0 else 1.0)
        ax.set_ylabel("score")
        ax.set_title(f"Offline metrics — {title}")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def _plot_scores(
    path: Path,
    samples: Mapping[str, npt.NDArray[np.float64]],
    title: str,
    model_order: Sequence[str],
) -> None:
    """Small multiples, not overlaid: models score on unrelated scales (counts, dot products,
    probabilities), so a shared axis would squash all but one histogram into a spike."""
    n = len(samples)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 3.2 * nrows), squeeze=False)
    try:
        flat = list(axes.ravel())
        for i, (ax, (name, values)) in enumerate(zip(flat, samples.items(), strict=False)):
            bins = min(50, max(5, int(np.sqrt(values.size))))
            # Same colour as the model's bars in metrics.png, so the two charts read together.
            colour = model_order.index(name) if name in model_order else len(model_order) + i
            ax.hist(values, bins=bins, color=f"C{colour % 10}")
            ax.set_title(f"{name} (n={values.size})", fontsize=9)
            ax.set_xlabel("score")
        for ax in flat[n:]:
            ax.set_visible(False)
        fig.suptitle(f"Score distributions — {title}")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)


def _clean_samples(score_samples: ScoreSamples | None) -> dict[str, npt.NDArray[np.float64]]:
    if not score_samples:
        return {}
    cleaned: dict[str, npt.NDArray[np.float64]] = {}
    for name, values in score_samples.items():
        array = np.asarray(values, dtype=np.float64).ravel()
        array = array[np.isfinite(array)]
        if array.size:
            cleaned[str(name)] = array
    return cleaned


def write_report(
    out_dir: Path,
    metrics: Mapping[str, Any],
    score_samples: ScoreSamples | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write ``report.md``, ``metrics.png`` and (given samples) ``scores.png``; return the .md path.

    ``metrics`` is the evaluation summary (``dataset``, ``split``, ``k``, ``models`` ->
    metric dicts, ``timings_s`` ...); every key is optional so a partial run still gets a
    report. Images are written next to the Markdown and linked relatively, so the folder
    can be copied or uploaded as a unit.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = _models(metrics)
    columns = _metric_columns(models)
    title = _title(metrics)

    lines = [f"# Offline evaluation: {title}", ""]
    dataset_lines = _dataset_lines(metrics)
    if dataset_lines:
        lines += ["## Dataset", "", *dataset_lines, ""]

    lines += ["## Metrics", ""]
    if models and columns:
        lines += [
            "Best value per metric in **bold**; all metrics are averaged over test users "
            "with at least one held-out item, except coverage (share of the catalog shown).",
            "",
            *_metrics_table(models, columns),
            "",
        ]
        if BASELINE in models and len(models) > 1:
            lines += [
                "### Lift vs popularity",
                "",
                "Relative difference (model − popularity) / popularity; "
                "n/a where popularity scores 0.",
                "",
                *_lift_table(models, columns),
                "",
            ]
        _plot_metrics(out_dir / "metrics.png", models, columns, title)
        lines += ["![metrics](metrics.png)", ""]
    else:
        lines += ["No model metrics were recorded.", ""]

    ctr_lines = _ctr_table(models)
    if ctr_lines:
        lines += [
            "## Simulated clicks",
            "",
            "Click-through rate on the top-k lists under the sample generator's hidden "
            "preferences; only meaningful for simulated data.",
            "",
            *ctr_lines,
            "",
        ]

    alone_lines = _features_alone_lines(metrics)
    if alone_lines:
        lines += [
            "## The ranker against its features alone",
            "",
            "The same retrieval candidates ordered by one ranking feature, in whichever "
            "direction scores better on these test learners (which flatters the feature).",
            "",
            *alone_lines,
            "",
        ]

    samples = _clean_samples(score_samples)
    if samples:
        _plot_scores(out_dir / "scores.png", samples, title, list(models))
        lines += ["## Score distributions", "", "![scores](scores.png)", ""]

    timing_lines = _timing_lines(metrics)
    if timing_lines:
        lines += ["## Timings", "", *timing_lines, ""]

    if notes:
        lines += ["## Notes", "", *(f"- {note}" for note in notes), ""]

    report = out_dir / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
