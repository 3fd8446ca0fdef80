"""Charts of a tuning job: best-so-far over time, and the Pareto front coloured by pool."""

from __future__ import annotations

from itertools import cycle

from runtime.charts import ChartFormat, figure, render
from services.tuner.domain.jobs import JobEngine

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
TIME_KEY = "st_tuner_time"  # seconds since the job started, stamped on each report


def best_so_far(engine: JobEngine, fmt: ChartFormat = "svg") -> bytes:
    metric = engine.spec.metrics[0]
    better = min if metric.mode == "min" else max
    points = sorted(
        (float(r[TIME_KEY]), float(r[metric.name]))
        for t in engine.record.trials.values()
        for r in t.reports
        if "ignored" not in r and TIME_KEY in r and isinstance(r.get(metric.name), int | float)
    )
    times: list[float] = []
    best: list[float] = []
    for moment, value in points:
        times.append(moment)
        best.append(value if not best else better(best[-1], value))
    with figure() as fig:
        ax = fig.add_subplot()
        if times:
            ax.step(times, best, where="post", color=_COLOURS[0], linewidth=2)
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=8, color="#999999")
        ax.set_xlabel("seconds since the job started")
        ax.set_ylabel(f"{metric.name} ({metric.mode})")
        ax.set_title(f"{engine.spec.name}: best {metric.name} so far")
        ax.grid(alpha=0.3)
        description = (
            f"{len(points)} reports; best {metric.name} {best[-1]:.4g} at {times[-1]:.1f} s"
            if times
            else "no reports yet"
        )
        return render(fig, fmt, f"Best {metric.name} so far", description)


def pareto_front(engine: JobEngine, fmt: ChartFormat = "svg") -> bytes:
    metrics = engine.spec.metrics
    if len(metrics) < 2:
        raise ValueError("a Pareto front needs a job with two or more metrics")
    x, y = metrics[0], metrics[1]
    finals = engine.finals()
    front = {t["trial_id"] for t in engine.pareto()["trials"]}
    pools = sorted({trial.pool for trial, _ in finals})
    colours = dict(zip(pools, cycle(_COLOURS), strict=False))
    with figure() as fig:
        ax = fig.add_subplot()
        for pool in pools:
            mine = [(t, m) for t, m in finals if t.pool == pool]
            ax.scatter(
                [m[x.name] for _, m in mine],
                [m[y.name] for _, m in mine],
                color=colours[pool],
                label=pool,
                s=[60 if t.trial_id in front else 18 for t, _ in mine],
                edgecolors=["black" if t.trial_id in front else "none" for t, _ in mine],
            )
        on_front = sorted(
            ((m[x.name], m[y.name]) for t, m in finals if t.trial_id in front), key=lambda p: p[0]
        )
        if on_front:
            ax.plot([p[0] for p in on_front], [p[1] for p in on_front], color="black", linewidth=1)
        ax.set_xlabel(f"{x.name} ({x.mode})")
        ax.set_ylabel(f"{y.name} ({y.mode})")
        ax.set_title(f"{engine.spec.name}: Pareto front")
        ax.grid(alpha=0.3)
        if pools:
            ax.legend(title="pool")
        description = (
            "; ".join(
                f"trial {t.trial_id} on {t.pool}: {x.name} {m[x.name]:.4g}, {y.name} {m[y.name]:.4g}"
                for t, m in finals
                if t.trial_id in front
            )
            or "no trial has reported both metrics"
        )
        return render(fig, fmt, "Pareto front", description)
