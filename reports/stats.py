"""Means and Student-t 95% confidence intervals over seeds, for grouped pandas frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# two-sided 95% Student t quantiles t(0.975, df); scipy is not a dependency of the suite
_T975 = {
    1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622,
    10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448, 15: 2.1314, 16: 2.1199, 17: 2.1098,
    18: 2.1009, 19: 2.0930, 20: 2.0860, 21: 2.0796, 22: 2.0739, 23: 2.0687, 24: 2.0639, 25: 2.0595,
    26: 2.0555, 27: 2.0518, 28: 2.0484, 29: 2.0452, 30: 2.0423, 40: 2.0211, 60: 2.0003, 120: 1.9799,
}  # fmt: skip
_Z975 = 1.959964


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (NaN for df < 1).

    Exact to four decimals for df <= 30 and at 40, 60, 120; between those, linear in 1/df (error < 1e-3).
    """
    if df < 1:
        return math.nan
    if df in _T975:
        return _T975[df]
    known = sorted(_T975)
    upper = next((d for d in known if d > df), None)
    lower = max(d for d in known if d < df)
    hi_inv, hi_t = (1 / upper, _T975[upper]) if upper else (0.0, _Z975)
    weight = (1 / lower - 1 / df) / (1 / lower - hi_inv)
    return _T975[lower] + weight * (hi_t - _T975[lower])


def ci95(values: pd.Series | np.ndarray) -> float:
    """Half-width of the Student-t 95% interval of the mean of the non-NaN ``values`` (NaN below two)."""
    values = pd.Series(values, dtype=float).dropna()
    n = len(values)
    if n < 2:
        return math.nan
    spread = values.std(ddof=1)
    if spread <= 1e-12 * abs(values.mean()):
        spread = 0.0  # identical values (sizes) summed in floating point: the interval is exactly zero
    return t975(n - 1) * spread / math.sqrt(n)


STATS = ("mean", "ci95", "n", "min", "max")  # the columns ``summarise`` gives each metric, as ``{name}_{stat}``


def summarise(frame: pd.DataFrame, keys: list[str], columns: dict[str, str]) -> pd.DataFrame:
    """Per group of ``keys``: ``{name}_mean``, ``_ci95``, ``_n``, ``_min`` and ``_max`` for each (column, name)."""
    grouped = frame.groupby(keys, sort=True, dropna=False)
    parts = []
    for column, name in columns.items():
        stats = grouped[column].agg(["mean", ci95, "count", "min", "max"])
        parts.append(stats.set_axis([f"{name}_{stat}" for stat in STATS], axis=1))
    if not parts:
        return grouped.size().to_frame("n").drop(columns="n")
    return pd.concat(parts, axis=1)
