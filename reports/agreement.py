"""Whether the backbones agree: the rank correlation of the models' order between every two feature networks.

A verdict that holds on one backbone only (say, LeNet FID ranks two collapsed generators one way, Inception FID
the other) is a property of the backbone, not of the models. For each metric scored on two or more backbones
(FID, KID, IS, ...), Kendall's tau of the models' means between every two backbones, and the pairs of models
whose order flips, so a reader sees which conclusions depend on the feature network.
"""

from __future__ import annotations

import itertools

import pandas as pd

from bench.base.metric_registry import BACKBONE_NAMES
from reports.load import Results
from reports.metrics import QUALITY, Metric, has_values
from reports.tables import Table, per_model, register_table

MAX_FLIPS_LISTED = 4  # a pair per line: more would make every row of the table tall


def _families(runs: pd.DataFrame) -> dict[str, list[Metric]]:
    """Metric name (the column less its backbone) -> its metrics on every backbone that scored these runs."""
    families: dict[str, list[Metric]] = {}
    for metric in QUALITY:
        if metric.backbone and has_values(metric, runs):
            families.setdefault(metric.column.removesuffix(f"_{metric.backbone}"), []).append(metric)
    return {name: metrics for name, metrics in families.items() if len(metrics) > 1}


def kendall_tau(a: pd.Series, b: pd.Series) -> float:
    """Kendall's tau-b of two scorings of the same models (1: same order, -1: reversed)."""
    return float(a.corr(b, method="kendall"))


def flipped_pairs(names: pd.Series, a: pd.Series, b: pd.Series) -> list[tuple[str, str]]:
    """The pairs of models that ``a`` and ``b`` order differently (a tie on either side is no flip), the most
    serious first: those both scorings set furthest apart in rank, where neither order is a near tie."""
    rank_a, rank_b = a.rank().to_numpy(), b.rank().to_numpy()
    flips = [
        (min(abs(rank_a[i] - rank_a[j]), abs(rank_b[i] - rank_b[j])), i, j)
        for i, j in itertools.combinations(range(len(names)), 2)
        if (a.iloc[i] - a.iloc[j]) * (b.iloc[i] - b.iloc[j]) < 0
    ]
    flips.sort(key=lambda flip: -flip[0])  # stable: equally serious flips keep the models' order
    return [(names.iloc[i], names.iloc[j]) for _, i, j in flips]


@register_table("agreement")
def agreement_table(results: Results) -> Table | None:
    """Per metric and pair of backbones: Kendall's tau over the models scored by both, and the flipped pairs;
    None when every metric was scored on one backbone."""
    families = _families(results.runs)
    if not families:
        return None
    data = per_model(results)[0]
    names = data["series"].where(data["model"] != "teacher", "teacher") + ", width " + data["width"].astype(str)
    rows = []
    for metrics in families.values():
        for first, second in itertools.combinations(metrics, 2):
            a, b = data[f"{first.report_name}_mean"], data[f"{second.report_name}_mean"]
            both = a.notna() & b.notna()
            flips = flipped_pairs(names[both], a[both], b[both])
            rows.append({
                "metric": first.short, "backbones": f"{BACKBONE_NAMES[first.backbone]} vs "
                f"{BACKBONE_NAMES[second.backbone]}", "models": int(both.sum()),
                "kendall_tau": kendall_tau(a[both], b[both]), "flips": len(flips),
                "flipped_pairs": "; ".join(f"{x} / {y}" for x, y in flips),
            })  # fmt: skip
    table = pd.DataFrame(rows)
    display = pd.DataFrame({
        "metric": table["metric"], "backbones": table["backbones"], "models": table["models"].astype(str),
        "Kendall's tau": [f"{tau:.2f}" for tau in table["kendall_tau"]], "pairs flipped": table["flips"].astype(str),
        "which (model / model)": [first_flips(pairs).replace("; ", ";\n") for pairs in table["flipped_pairs"]],
    })  # fmt: skip
    caption = (
        "For each metric scored on several feature networks: Kendall's tau-b of the order of the models' means "
        "over seeds between two backbones (1: the same order, -1: reversed), over the models both scored, and the "
        f"pairs of models the two backbones order differently, at most {MAX_FLIPS_LISTED}, the most serious first "
        "(the pairs both backbones set furthest apart in rank; the CSV lists them all). A conclusion that rests on a "
        "flipped pair depends on the backbone."
    )
    return Table("agreement", "Do the backbones agree?", caption, table, display)


def first_flips(pairs: str) -> str:
    """The first ``MAX_FLIPS_LISTED`` of '; '-joined pairs, and how many more; '–' for none."""
    listed = pairs.split("; ") if pairs else []
    more = len(listed) - MAX_FLIPS_LISTED
    return "; ".join(listed[:MAX_FLIPS_LISTED]) + (f"; and {more} more" if more > 0 else "") if listed else "–"
