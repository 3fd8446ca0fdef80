"""Deterministic, accessible SVG/PNG charts of model metrics (matplotlib, Agg, no pyplot)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, DateFormatter
from matplotlib.ticker import PercentFormatter

from runtime.charts import ChartFormat, figure, render
from services.fraud.domain.diagnostics import WeeklyRates
from services.fraud.domain.metrics import POPULATION, ModelMetrics

_LEGIT = "#1f77b4"
_FRAUD = "#d62728"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def roc_svg(metrics: ModelMetrics, *, format: ChartFormat = "svg") -> bytes:
    """ROC curve of the holdout with the chance diagonal."""
    title = f"ROC curve (AUC {metrics.auc:.3f})"
    with figure(6.0, 5.0) as fig:
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], linestyle="--", color="#888888", label="Random guess")
        ax.plot(metrics.roc_fpr, metrics.roc_tpr, color=_FRAUD, linewidth=2, label="Model")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("False positive rate (share of legitimate events flagged)")
        ax.set_ylabel("True positive rate (share of fraud caught)")
        ax.set_title(title)
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        points = [
            f"at FPR {_pct(f)} the model catches {_pct(float(np.interp(f, metrics.roc_fpr, metrics.roc_tpr)))} of fraud"
            for f in (0.001, 0.01, 0.05, 0.1)
        ]
        range_text = (
            f" (uncertainty range {metrics.auc_lower:.3f} to {metrics.auc_upper:.3f})"
            if np.isfinite(metrics.auc_lower)
            else ""
        )
        description = (
            f"Area under the curve {metrics.auc:.3f}{range_text}, from {metrics.n_fraud} fraud "
            f"and {metrics.n_legit} legitimate events; " + "; ".join(points) + "."
        )
        return render(fig, format, title, description)


def score_distribution_svg(
    metrics: ModelMetrics, *, threshold: float | None = None, format: ChartFormat = "svg"
) -> bytes:
    """Score histograms per 100,000 events: legit on the left axis, fraud on the right."""
    title = "Score distribution per 100,000 events"
    edges = metrics.histogram_edges
    centers = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    scale = POPULATION / max(metrics.n_events, 1)
    legit = metrics.legit_histogram * scale
    fraud = metrics.fraud_histogram * scale
    with figure() as fig:
        ax: Axes = fig.add_subplot()
        ax.bar(centers, legit, width=width * 0.9, color=_LEGIT, alpha=0.6, label="Legitimate")
        ax.set_xlim(0, 1000)
        ax.set_xlabel("Model score (0 = low risk, 1000 = high risk)")
        ax.set_ylabel("Legitimate events", color=_LEGIT)
        right = ax.twinx()
        right.step(centers, fraud, where="mid", color=_FRAUD, linewidth=2, label="Fraud")
        right.set_ylabel("Fraud events", color=_FRAUD)
        right.set_ylim(bottom=0)
        if threshold is not None:
            ax.axvline(threshold, color="black", linestyle=":", label=f"Threshold {threshold:g}")
        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper center")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        rows = [
            f"{edges[i]:g}-{edges[i + 1]:g}: {legit[i]:.0f} legitimate, {fraud[i]:.1f} fraud"
            for i in range(len(centers))
            if legit[i] >= 0.5 or fraud[i] >= 0.05
        ]
        description = (
            f"Histogram of model scores in bins of {width:g}, scaled to 100,000 events at a "
            f"fraud rate of {_pct(metrics.fraud_rate)}. " + "; ".join(rows) + "."
        )
        return render(fig, format, title, description)


def importance_svg(metrics: ModelMetrics, top: int = 15, *, format: ChartFormat = "svg") -> bytes:
    """Horizontal bars of each input variable's share of total importance."""
    shares: dict[str, float] = dict(metrics.variable_importance_share)
    for names, share in metrics.aggregated_importance_share.items():
        shares[" + ".join(names)] = share
    ranked = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    labels = [name for name, _ in ranked][::-1]
    values = [share for _, share in ranked][::-1]
    title = "Variable importance"
    with figure(7.0, max(2.5, 0.35 * len(labels) + 1.3)) as fig:
        ax = fig.add_subplot()
        ax.barh(labels, values, color=_LEGIT)
        if values:
            ax.axvline(max(values), color="#888888", linestyle=":")
        ax.set_xlabel("Share of total importance")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        description = "Most important variables first: " + "; ".join(
            f"{name} {_pct(share)}" for name, share in ranked
        )
        return render(fig, format, title, description + ".")


def fraud_rate_svg(rates: WeeklyRates, *, format: ChartFormat = "svg") -> bytes:
    """Weekly fraud rate and, when raw labels were given, the label-missing rate."""
    dates = [np.datetime64(d, "D").item() for d in rates.week_start]
    fraud_rate = rates.fraud_rate
    missing_rate = rates.label_missing_rate
    title = "Weekly fraud rate" + (" and missing labels" if missing_rate is not None else "")
    with figure(7.5, 4.5) as fig:
        ax = fig.add_subplot()
        ax.plot(dates, fraud_rate, marker="o", color=_FRAUD, label="Fraud rate (labeled events)")
        series: list[tuple[str, Sequence[float]]] = [("fraud rate", list(fraud_rate))]
        if missing_rate is not None:
            ax.plot(
                dates,
                missing_rate,
                marker="s",
                linestyle="--",
                color="#555555",
                label="Events without a label",
            )
            series.append(("missing labels", list(missing_rate)))
        ax.set_xlabel("Week starting")
        ax.set_ylabel("Share of events")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        if 0 < len(dates) <= 16:
            ax.set_xticks(dates)
        else:
            ax.xaxis.set_major_locator(AutoDateLocator(maxticks=12))  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
        if len(dates) == 1:
            ax.set_xlim(dates[0] - timedelta(days=7), dates[0] + timedelta(days=7))
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
        weeks = []
        for i, d in enumerate(dates):
            parts = [
                f"{name} {_pct(values[i])}" for name, values in series if np.isfinite(values[i])
            ]
            if parts:
                weeks.append(f"week of {d.isoformat()}: " + ", ".join(parts))
        description = "; ".join(weeks) + "." if weeks else "No events."
        return render(fig, format, title, description)
