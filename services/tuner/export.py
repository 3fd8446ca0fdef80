"""Turns a fine-tuned MiniLM classifier checkpoint into ONNX files the inference service serves."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from services.inference.adapters.bert_onnx import quantize_int8
from services.tuner.scripts.finetune_minilm import (
    TOKENIZER_DIR,
    MeanPoolClassifier,
    ReviewsNotFound,
    build_model,
    load_reviews,
    load_tokenizer,
    read_checkpoint,
    split_reviews,
)

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
FP32_TOLERANCE = 1e-4
CHECK_TEXTS = 16
# Used when the review corpus is not on this machine: the check needs texts, not these ones.
FALLBACK_TEXTS = (
    "A gripping, beautifully acted drama that earns every one of its tears.",
    "Tedious, overlong and painfully unfunny.",
    "The plot makes no sense, but the stunts are spectacular.",
    "One of the year's best films.",
    "I wanted to like it; I did not.",
    "Bad.",
    "An uneven but often charming comedy whose leads carry it past a weak script and a "
    "finale that drags on for far too long.",
    "Neither as clever as it thinks nor as dull as its trailer.",
)


class ExportCheckFailed(RuntimeError):
    """ONNX Runtime's fp32 logits differ from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class ExportReport:
    """Where the files went and how closely ONNX Runtime reproduces PyTorch on `check_texts`."""

    out_dir: Path
    model_fp32: Path
    model_int8: Path | None
    tokenizer: Path
    labels: tuple[str, ...]
    input_names: tuple[str, ...]
    max_length: int
    epoch: int
    accuracy: float
    check_texts: int
    fp32_max_abs_diff: float
    int8_max_abs_diff: float | None
    int8_argmax_agreement: float | None

    @property
    def model(self) -> Path:
        """The file to serve on CPU: int8 when it was made."""
        return self.model_int8 or self.model_fp32


def _check_texts(state: dict[str, Any]) -> list[str]:
    hp = state["hyperparameters"]
    try:
        _, validation = split_reviews(
            load_reviews(), seed=int(hp["seed"]), max_train=0, max_eval=CHECK_TEXTS
        )
    except ReviewsNotFound:
        return list(FALLBACK_TEXTS)
    return [text for text, _ in validation]


def _onnx_logits(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits: np.ndarray = session.run([OUTPUT_NAME], feeds)[0]
    return logits


def _export_onnx(model: MeanPoolClassifier, path: Path) -> None:
    example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    dynamic = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
    }
    with warnings.catch_warnings():
        # The legacy exporter is chosen on purpose, and the tracer's warnings concern branches
        # that are constant for an encoder; the fp32 check on other shapes is the real guard.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python")
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        # The TorchScript exporter: the dynamo one needs onnxscript, which the project lacks.
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={**dynamic, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def export_classifier(
    checkpoint_dir: Path,
    out_dir: Path,
    *,
    quantize: bool = True,
    texts: Sequence[str] | None = None,
) -> ExportReport:
    """Export the checkpoint in `checkpoint_dir` to `out_dir`: model.onnx, model.int8.onnx, tokenizer.

    `texts` are what ONNX Runtime is checked on: by default the first validation reviews of the
    trial's own split. Raises ExportCheckFailed when fp32 logits are off by 1e-4 or more.
    """
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    state = read_checkpoint(checkpoint_dir)
    if state is None:
        raise FileNotFoundError(f"{checkpoint_dir} holds no fine-tuning checkpoint")
    max_length = int(state["hyperparameters"]["max_length"])
    model = build_model(state["encoder_config"])
    model.load_state_dict(state["model"])
    model.eval()
    saved_tokenizer = checkpoint_dir / TOKENIZER_DIR
    tokenizer = load_tokenizer(saved_tokenizer if saved_tokenizer.is_dir() else None)

    out_dir.mkdir(parents=True, exist_ok=True)
    fp32_path = out_dir / "model.onnx"
    _export_onnx(model, fp32_path)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "labels.json").write_text(json.dumps(state["labels"]) + "\n", encoding="utf-8")

    check = list(texts) if texts is not None else _check_texts(state)
    if not check:
        raise ValueError("texts is empty: the ONNX check needs at least one text")
    encoded = tokenizer(
        check, padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    feeds = {name: np.asarray(encoded[name], dtype=np.int64) for name in INPUT_NAMES}
    with torch.inference_mode():
        expected = model(*(torch.from_numpy(feeds[name]) for name in INPUT_NAMES)).numpy()
    fp32_diff = float(np.abs(_onnx_logits(fp32_path, feeds) - expected).max())
    if not fp32_diff < FP32_TOLERANCE:
        raise ExportCheckFailed(
            f"ONNX fp32 logits differ from PyTorch by {fp32_diff:.2e} (tolerance {FP32_TOLERANCE})"
        )

    int8_path: Path | None = None
    int8_diff: float | None = None
    agreement: float | None = None
    if quantize:
        int8_path = out_dir / "model.int8.onnx"
        quantize_int8(fp32_path, int8_path)
        int8_logits = _onnx_logits(int8_path, feeds)
        int8_diff = float(np.abs(int8_logits - expected).max())
        agreement = float((int8_logits.argmax(-1) == expected.argmax(-1)).mean())

    return ExportReport(
        out_dir=out_dir,
        model_fp32=fp32_path,
        model_int8=int8_path,
        tokenizer=out_dir / "tokenizer.json",
        labels=tuple(state["labels"]),
        input_names=INPUT_NAMES,
        max_length=max_length,
        epoch=int(state["epoch"]),
        accuracy=float(state["accuracy"]),
        check_texts=len(check),
        fp32_max_abs_diff=fp32_diff,
        int8_max_abs_diff=int8_diff,
        int8_argmax_agreement=agreement,
    )


def registration_config(
    report: ExportReport, *, name: str = "rotten-tomatoes-minilm", version: int = 1
) -> dict[str, Any]:
    """The `config` form field of `POST /v1/models`: a ModelConfig without artifacts or tokenizer.

    Upload `report.model` as `model` and `report.tokenizer` as `tokenizer` (see `upload_files`).
    """
    ids = [-1, -1]
    kind = "int8" if report.model_int8 is not None else "fp32"
    return {
        "name": name,
        "version": version,
        "task": "text_classification",
        "description": (
            f"all-MiniLM-L6-v2 fine-tuned on Rotten Tomatoes reviews ({kind} ONNX, epoch "
            f"{report.epoch}, validation accuracy {report.accuracy:.3f})"
        ),
        "inputs": [{"name": n, "datatype": "INT64", "shape": ids} for n in report.input_names],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, len(report.labels)]}],
        "labels": list(report.labels),
        # The length the model was trained on; longer reviews are cut, as in training.
        "max_sequence_length": report.max_length,
        "truncation": "truncate",
        "sequence_buckets": sorted(
            {b for b in (16, 32, 64, 128, 256) if b < report.max_length} | {report.max_length}
        ),
    }


def upload_files(report: ExportReport) -> dict[str, Path]:
    """The file fields of `POST /v1/models`; int8 serves CPU and the fp32 model CUDA."""
    files = {"model": report.model, "tokenizer": report.tokenizer}
    if report.model_int8 is not None:
        # ONNX Runtime's CUDA provider lacks the dynamic int8 kernels; fp32 runs there natively.
        files["model_cuda"] = report.model_fp32
    return files
