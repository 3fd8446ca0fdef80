"""A dependency-free example trial: a noisy quadratic that improves per epoch, with a size cost.

The console's new-job example runs it; `loss` and `size` pull in different directions, so a
multi-objective job has a real Pareto front. Run from the repository root, as workers are.
"""

from __future__ import annotations

import time

from trellis.reporter import Reporter, parse_config


def main() -> None:
    config = parse_config()
    x = float(config["x"])
    epochs = int(config.get("epochs", 3))
    seconds_per_epoch = float(config.get("delay", 0.3))
    report = Reporter()
    for epoch in range(1, epochs + 1):
        time.sleep(seconds_per_epoch)
        report(epoch=epoch, loss=(x - 0.3) ** 2 + 1.0 / (epoch + 1), size=1.0 + 4.0 * abs(x - 0.8))


if __name__ == "__main__":
    main()
