"""Trial subprocesses: reports, outcomes, stop/pause/timeout and the reporter scripts import."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.tuner.adapters import trial_process
from services.tuner.adapters.trial_process import (
    TRIAL_METRIC_PREFIX,
    Report,
    ReportError,
    TrialOutcome,
    TrialProcess,
    parse_report_line,
    trial_argv,
)
from trellis.reporter import Reporter, checkpoint_dir, parse_config

REPO_ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    def __init__(self) -> None:
        self.reports: list[Report] = []
        self.output: list[str] = []
        self.ready = asyncio.Event()

    async def on_report(self, report: Report) -> None:
        self.reports.append(report)

    async def on_output(self, line: str) -> None:
        self.output.append(line)
        if line == "ready":
            self.ready.set()


def write_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(body))
    return script


def make_trial(
    tmp_path: Path,
    body: str,
    config: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[TrialProcess, Recorder]:
    script = write_script(tmp_path, body)
    recorder = Recorder()
    argv = trial_argv(sys.executable, str(script), config or {}, tmp_path / "checkpoints")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    trial = TrialProcess(
        argv,
        cwd=tmp_path,
        env=env,
        on_report=recorder.on_report,
        on_output=recorder.on_output,
        **kwargs,
    )
    return trial, recorder


async def run_trial(tmp_path: Path, body: str, **kwargs: Any) -> tuple[TrialOutcome, Recorder]:
    trial, recorder = make_trial(tmp_path, body, **kwargs)
    await trial.start()
    outcome = await asyncio.wait_for(trial.wait(), 10)
    return outcome, recorder


def alive(pid: int) -> bool:
    # A killed grandchild can linger as a zombie until init reaps it: that counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def eventually(check: Callable[[], bool], within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return check()


SLEEPER = """
    import time
    print("ready", flush=True)
    time.sleep(30)
"""


# --- parsing and argv -------------------------------------------------------------------------


def test_parse_report_line() -> None:
    assert parse_report_line("epoch 1 done") is None
    assert parse_report_line("") is None
    assert parse_report_line(
        '[tune-metric]: {"epoch": 1, "loss": 0.5, "tag": "a", "ok": true}'
    ) == {
        "epoch": 1,
        "loss": 0.5,
        "tag": "a",
        "ok": True,
    }
    assert parse_report_line('[tune-metric]: {"loss": 0.5}\r\n') == {"loss": 0.5}
    # Syne Tune's own scan finds the tag anywhere on the line.
    assert parse_report_line('INFO [tune-metric]: {"loss": 1}') == {"loss": 1}
    nan = parse_report_line('[tune-metric]: {"loss": NaN}')
    assert nan is not None and math.isnan(float(nan["loss"]))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[tune-metric]: {not json", "not valid JSON"),
        ("[tune-metric]: [1, 2]", "must be a JSON object"),
        ('[tune-metric]: {"loss": null}', "'loss'"),
        ('[tune-metric]: {"loss": [1]}', "got list"),
        ('[tune-metric]: {"loss": {"a": 1}}', "got dict"),
        ("[tune-metric]: " + "[" * 100_000, "bytes"),
        ('[tune-metric]: {"s": "' + "x" * 70_000 + '"}', "over the 65536 byte limit"),
    ],
)
def test_parse_report_line_rejects(line: str, message: str) -> None:
    with pytest.raises(ReportError, match=message) as caught:
        parse_report_line(line)
    assert isinstance(caught.value, ValueError)


def test_parse_report_line_deep_nesting_is_a_report_error() -> None:
    with pytest.raises(ReportError):
        parse_report_line("[tune-metric]: " + "[" * 20_000 + "]" * 20_000)


def test_trial_argv_renders_like_syne_tune(tmp_path: Path) -> None:
    config = {
        "lr": 0.001,
        "epochs": 3,
        "tiny": 1e-5,
        "opt": "adam",
        "bn": True,
        "n.layers": np.int64(4),
    }
    argv = trial_argv("/usr/bin/python3", "train.py", config, tmp_path / "ck")
    assert argv == [
        "/usr/bin/python3",
        "train.py",
        "--lr",
        "0.001",
        "--epochs",
        "3",
        "--tiny",
        "1e-05",
        "--opt",
        "adam",
        "--bn",
        "True",
        "--n.layers",
        "4",
        "--st_checkpoint_dir",
        str(tmp_path / "ck"),
    ]


@pytest.mark.parametrize("key", ["", "1lr", "lr rate", "--lr", "lr=1", "lr\n"])
def test_trial_argv_rejects_bad_keys(key: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="argument name"):
        trial_argv("python", "train.py", {key: 1}, tmp_path)


@pytest.mark.parametrize("value", [None, [1, 2], {"a": 1}, "a\x00b"])
def test_trial_argv_rejects_bad_values(value: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'lr'"):
        trial_argv("python", "train.py", {"lr": value}, tmp_path)


def test_trial_argv_reserves_checkpoint_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        trial_argv("python", "train.py", {"st_checkpoint_dir": "/x"}, tmp_path)


# --- the reporter -----------------------------------------------------------------------------


def test_reporter_prints_syne_tune_lines(capsys: pytest.CaptureFixture[str]) -> None:
    report = Reporter()
    report(epoch=1, loss=0.5, name="a")
    # Scripts pass numpy scalars even though the signature says float.
    report(epoch=2, loss=np.float32(0.25))  # type: ignore[arg-type]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("[tune-metric]: {") for line in lines)
    first = json.loads(lines[0].removeprefix(TRIAL_METRIC_PREFIX))
    assert first["epoch"] == 1 and first["loss"] == 0.5 and first["name"] == "a"
    assert abs(first["st_worker_timestamp"] - time.time()) < 60
    assert first["st_worker_time"] >= 0
    assert first["st_worker_iter"] == 0
    second = parse_report_line(lines[1])
    assert second is not None and second["loss"] == 0.25 and second["st_worker_iter"] == 1


def test_reporter_without_time(capsys: pytest.CaptureFixture[str]) -> None:
    Reporter(add_time=False)(loss=1.0)
    report = parse_report_line(capsys.readouterr().out)
    assert report is not None
    assert "st_worker_time" not in report and "st_worker_timestamp" in report


def test_reporter_rejects_reserved_and_missing_values() -> None:
    report = Reporter()
    with pytest.raises(ValueError, match="st_"):
        report(st_loss=1.0)
    with pytest.raises(ValueError, match="None"):
        report(loss=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        report(loss=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bytes"):
        report(blob="x" * 70_000)


def test_parse_config_and_checkpoint_dir() -> None:
    argv = ["--lr", "0.1", "--shift", "-1", "--opt=adam", "--st_checkpoint_dir", "/tmp/ck"]
    assert parse_config(argv) == {
        "lr": "0.1",
        "shift": "-1",
        "opt": "adam",
        "st_checkpoint_dir": "/tmp/ck",
    }
    assert checkpoint_dir(argv) == Path("/tmp/ck")
    assert checkpoint_dir(["--st_checkpoint_dir=/a/b"]) == Path("/a/b")
    assert checkpoint_dir(["--lr", "1"]) is None
    assert parse_config([]) == {}
    with pytest.raises(ValueError, match="no value"):
        parse_config(["--lr"])
    with pytest.raises(ValueError, match="expected --name"):
        parse_config(["lr", "1"])


# --- running trials ---------------------------------------------------------------------------


async def test_three_epochs_complete(tmp_path: Path) -> None:
    outcome, recorder = await run_trial(
        tmp_path,
        """
        from trellis.reporter import Reporter
        report = Reporter()
        for epoch in range(1, 4):
            print(f"training epoch {epoch}")
            report(epoch=epoch, loss=1.0 / epoch)
        """,
    )
    assert outcome == TrialOutcome(0, "completed", None, 3, 0)
    assert [r["epoch"] for r in recorder.reports] == [1, 2, 3]
    assert [r["st_worker_iter"] for r in recorder.reports] == [0, 1, 2]
    assert recorder.output == ["training epoch 1", "training epoch 2", "training epoch 3"]


async def test_hand_printed_syne_tune_line(tmp_path: Path) -> None:
    outcome, recorder = await run_trial(
        tmp_path,
        """
        import json, time
        print('[tune-metric]: ' + json.dumps({"epoch": 1, "accuracy": 0.9, "st_worker_timestamp": time.time()}), flush=True)
        """,
    )
    assert outcome.reason == "completed" and outcome.reports == 1
    assert recorder.reports[0]["accuracy"] == 0.9 and recorder.reports[0]["epoch"] == 1


async def test_config_and_checkpoint_dir_reach_the_script(tmp_path: Path) -> None:
    outcome, recorder = await run_trial(
        tmp_path,
        """
        from trellis.reporter import Reporter, checkpoint_dir, parse_config
        config = parse_config()
        ck = checkpoint_dir()
        ck.mkdir(parents=True, exist_ok=True)
        (ck / "state").write_text("saved")
        Reporter()(lr=float(config["lr"]), epochs=int(config["epochs"]), opt=config["opt"],
                   flag=config["flag"], ck=str(ck))
        """,
        config={"lr": 0.01, "epochs": 7, "opt": "sgd", "flag": False},
    )
    assert outcome.reason == "completed"
    report = recorder.reports[0]
    assert report["lr"] == 0.01 and report["epochs"] == 7 and report["opt"] == "sgd"
    assert report["flag"] == "False"
    assert report["ck"] == str(tmp_path / "checkpoints")
    assert (tmp_path / "checkpoints" / "state").read_text() == "saved"


async def test_crash_fails_with_traceback_tail(tmp_path: Path) -> None:
    outcome, recorder = await run_trial(
        tmp_path,
        """
        from trellis.reporter import Reporter
        Reporter()(epoch=1, loss=0.5)
        def train():
            raise RuntimeError("exploding gradients")
        train()
        """,
    )
    assert outcome.reason == "failed"
    assert outcome.returncode == 1 and outcome.reports == 1
    assert outcome.error is not None
    assert "Traceback (most recent call last)" in outcome.error
    assert "RuntimeError: exploding gradients" in outcome.error
    assert "exited with code 1" in outcome.error
    assert len(recorder.reports) == 1


async def test_failed_tail_keeps_only_the_last_lines(tmp_path: Path) -> None:
    outcome, _ = await run_trial(
        tmp_path,
        """
        import sys
        for i in range(50):
            print(f"line {i}")
        sys.exit(3)
        """,
        max_output_lines_kept=5,
    )
    assert outcome.reason == "failed" and outcome.returncode == 3
    assert outcome.error is not None
    assert outcome.error.splitlines()[:5] == [f"line {i}" for i in range(45, 50)]


async def test_garbage_and_bad_reports_are_counted(tmp_path: Path) -> None:
    outcome, recorder = await run_trial(
        tmp_path,
        """
        import sys
        from trellis.reporter import Reporter
        print("just a log line")
        print("[tune-metric]: {broken json", flush=True)
        print("[tune-metric]: [1, 2, 3]", flush=True)
        print('[tune-metric]: {"loss": null}', flush=True)
        sys.stdout.buffer.write(b"\\xff\\xfe binary junk\\n")
        sys.stdout.buffer.write(b"x" * 70000 + b"\\n")
        sys.stdout.flush()
        print("warning on stderr", file=sys.stderr, flush=True)
        Reporter()(loss=0.1)
        """,
    )
    assert outcome.reason == "completed"
    assert outcome.reports == 1 and outcome.bad_lines == 5
    assert recorder.reports[0]["loss"] == 0.1
    assert "just a log line" in recorder.output
    assert "warning on stderr" in recorder.output
    notes = [line for line in recorder.output if line.startswith("[trellis] bad output line")]
    assert len(notes) == 5
    assert any("not valid JSON" in note for note in notes)
    assert any("must be a JSON object" in note for note in notes)
    assert any("over 65536 bytes" in note for note in notes)
    assert any("UTF-8" in note for note in notes)
    cut = [line for line in recorder.output if line.startswith("xxx")]
    assert len(cut) == 1 and len(cut[0]) == trial_process.MAX_LINE_BYTES


async def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    outcome, recorder = await run_trial(
        tmp_path,
        """
        import sys
        sys.stdout.write('[tune-metric]: {"loss": 2}')
        """,
    )
    assert outcome.reason == "completed" and recorder.reports == [{"loss": 2}]


async def test_never_reporting_is_no_report(tmp_path: Path) -> None:
    outcome, _ = await run_trial(tmp_path, 'print("trained, but forgot to report")\n')
    assert outcome.reason == "no_report" and outcome.returncode == 0
    assert outcome.error is not None and "never reported" in outcome.error
    assert "forgot to report" in outcome.error


async def test_stop_ends_a_sleeping_script_quickly(tmp_path: Path) -> None:
    trial, recorder = make_trial(tmp_path, SLEEPER)
    await trial.start()
    await asyncio.wait_for(recorder.ready.wait(), 5)
    began = time.monotonic()
    await trial.stop()
    outcome = await trial.wait()
    assert time.monotonic() - began < 2
    assert outcome.reason == "stopped" and outcome.returncode == -signal.SIGTERM
    assert outcome.error is None
    await trial.stop()  # a second stop is harmless
    assert await trial.wait() == outcome


async def test_pause_keeps_the_checkpoint(tmp_path: Path) -> None:
    trial, recorder = make_trial(
        tmp_path,
        """
        import time
        from trellis.reporter import Reporter, checkpoint_dir
        ck = checkpoint_dir()
        ck.mkdir(parents=True, exist_ok=True)
        (ck / "epoch").write_text("1")
        Reporter()(epoch=1)
        print("ready", flush=True)
        time.sleep(30)
        """,
    )
    await trial.start()
    await asyncio.wait_for(recorder.ready.wait(), 5)
    await trial.pause()
    outcome = await asyncio.wait_for(trial.wait(), 2)
    assert outcome.reason == "paused" and outcome.reports == 1
    assert (tmp_path / "checkpoints" / "epoch").read_text() == "1"


async def test_timeout(tmp_path: Path) -> None:
    began = time.monotonic()
    outcome, _ = await run_trial(tmp_path, SLEEPER, timeout_s=0.5)
    assert outcome.reason == "timeout"
    assert outcome.error is not None and "time limit" in outcome.error
    assert time.monotonic() - began < 3


async def test_stop_from_inside_on_report(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """
        import time
        from trellis.reporter import Reporter
        report = Reporter()
        for epoch in range(1, 1000):
            report(epoch=epoch)
            time.sleep(0.02)
        """,
    )
    reports: list[Report] = []
    trial: TrialProcess

    async def on_report(report: Report) -> None:
        reports.append(report)
        if len(reports) == 2:
            await trial.stop()

    trial = TrialProcess(
        trial_argv(sys.executable, str(script), {}, tmp_path / "ck"),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        on_report=on_report,
    )
    await trial.start()
    outcome = await asyncio.wait_for(trial.wait(), 5)
    assert outcome.reason == "stopped"
    assert 2 <= outcome.reports < 10


async def test_sigterm_ignored_then_killed_after_grace(tmp_path: Path) -> None:
    trial, recorder = make_trial(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(30)
        """,
        grace_s=0.3,
    )
    await trial.start()
    await asyncio.wait_for(recorder.ready.wait(), 5)
    await trial.stop()
    outcome = await asyncio.wait_for(trial.wait(), 3)
    assert outcome.reason == "stopped" and outcome.returncode == -signal.SIGKILL


async def test_stop_kills_child_processes(tmp_path: Path) -> None:
    trial, recorder = make_trial(
        tmp_path,
        """
        import subprocess, time
        child = subprocess.Popen(["sleep", "30"])
        print(f"child {child.pid}", flush=True)
        print("ready", flush=True)
        time.sleep(30)
        """,
    )
    await trial.start()
    await asyncio.wait_for(recorder.ready.wait(), 5)
    child = int(next(line for line in recorder.output if line.startswith("child ")).split()[1])
    assert alive(child)
    await trial.stop()
    outcome = await asyncio.wait_for(trial.wait(), 3)
    assert outcome.reason == "stopped"
    assert await eventually(lambda: not alive(child))


async def test_leftover_children_are_killed_on_completion(tmp_path: Path) -> None:
    outcome, recorder = await run_trial(
        tmp_path,
        """
        import subprocess
        from trellis.reporter import Reporter
        child = subprocess.Popen(["sleep", "30"])
        print(f"child {child.pid}", flush=True)
        Reporter()(loss=1.0)
        """,
    )
    assert outcome.reason == "completed"
    child = int(next(line for line in recorder.output if line.startswith("child ")).split()[1])
    assert await eventually(lambda: not alive(child))


async def test_escaped_descendant_does_not_hang_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trial_process, "_PIPE_DRAIN_S", 0.3)
    outcome, recorder = await run_trial(
        tmp_path,
        """
        import subprocess
        from trellis.reporter import Reporter
        child = subprocess.Popen(["sleep", "30"], start_new_session=True)
        print(f"child {child.pid}", flush=True)
        Reporter()(loss=1.0)
        """,
    )
    child = int(next(line for line in recorder.output if line.startswith("child ")).split()[1])
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, signal.SIGKILL)
    assert outcome.reason == "completed" and outcome.reports == 1


async def test_stop_before_start(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path, SLEEPER)
    await trial.stop()
    await trial.start()
    assert trial.pid is None
    assert await trial.wait() == TrialOutcome(None, "stopped", None, 0, 0)


async def test_stop_while_starting(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path, SLEEPER)
    starting = asyncio.create_task(trial.start())
    await asyncio.sleep(0)
    await trial.stop()
    await starting
    outcome = await asyncio.wait_for(trial.wait(), 3)
    assert outcome.reason == "stopped"


async def test_callback_errors_do_not_stop_the_trial(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """
        from trellis.reporter import Reporter
        report = Reporter()
        print("hello")
        report(epoch=1)
        report(epoch=2)
        """,
    )

    async def broken(_: object) -> None:
        raise RuntimeError("callback bug")

    trial = TrialProcess(
        trial_argv(sys.executable, str(script), {}, tmp_path / "ck"),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        on_report=broken,
        on_output=broken,
    )
    await trial.start()
    outcome = await asyncio.wait_for(trial.wait(), 5)
    assert outcome.reason == "completed" and outcome.reports == 2


async def test_missing_entry_point_fails(tmp_path: Path) -> None:
    trial = TrialProcess(
        trial_argv(sys.executable, str(tmp_path / "nope.py"), {}, tmp_path / "ck"),
        cwd=tmp_path,
        env=dict(os.environ),
        on_report=Recorder().on_report,
    )
    await trial.start()
    outcome = await asyncio.wait_for(trial.wait(), 5)
    assert outcome.reason == "failed" and outcome.returncode == 2
    assert outcome.error is not None and "nope.py" in outcome.error


async def test_wait_before_start_is_an_error(tmp_path: Path) -> None:
    trial, _ = make_trial(tmp_path, SLEEPER)
    with pytest.raises(RuntimeError, match="not started"):
        await trial.wait()


async def test_chatty_script_with_slow_callbacks_keeps_every_line(tmp_path: Path) -> None:
    script = write_script(
        tmp_path,
        """
        from trellis.reporter import Reporter
        for i in range(5000):
            print(f"line {i}")
        Reporter()(loss=1.0)
        """,
    )
    lines: list[str] = []

    async def slow_output(line: str) -> None:
        lines.append(line)
        if len(lines) % 100 == 0:
            await asyncio.sleep(0.001)

    trial = TrialProcess(
        trial_argv(sys.executable, str(script), {}, tmp_path / "ck"),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        on_report=Recorder().on_report,
        on_output=slow_output,
    )
    await trial.start()
    outcome = await asyncio.wait_for(trial.wait(), 10)
    assert outcome.reason == "completed" and outcome.reports == 1
    assert lines == [f"line {i}" for i in range(5000)]
