"""Tokenises text batches for the ONNX encoders, with explicit truncation and bucketed padding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tokenizers import Tokenizer

DEFAULT_BUCKETS = (16, 32, 64, 128, 256, 512)

Truncation = Literal["truncate", "reject"]


class TextTooLong(ValueError):
    """A text needs more than ``limit`` tokens (special tokens included) in "reject" mode."""

    def __init__(self, index: int, tokens: int, limit: int) -> None:
        super().__init__(f"text {index} has {tokens} tokens, more than the limit of {limit}")
        self.index = index
        self.tokens = tokens
        self.limit = limit


@dataclass(frozen=True)
class Encoded:
    """A padded batch: int64 ``[batch, padded_len]`` arrays plus per-text bookkeeping."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    lengths: list[int]
    truncated: list[bool]

    def feed(self) -> dict[str, np.ndarray]:
        """The arrays keyed by the encoder graph's input names."""
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


class TextTokenizer:
    """``tokenizers`` wrapper that pads each batch to one of a few bucket lengths."""

    def __init__(
        self,
        tokenizer_json: Path | str,
        *,
        max_length: int,
        truncation: Truncation = "truncate",
        buckets: Sequence[int] = DEFAULT_BUCKETS,
    ) -> None:
        self._setup(
            Tokenizer.from_file(str(tokenizer_json)),
            max_length=max_length,
            truncation=truncation,
            buckets=buckets,
        )

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        max_length: int,
        truncation: Truncation = "truncate",
        buckets: Sequence[int] = DEFAULT_BUCKETS,
    ) -> TextTokenizer:
        """Build from the contents of a ``tokenizer.json``."""
        self = cls.__new__(cls)
        self._setup(
            Tokenizer.from_str(data.decode("utf-8")),
            max_length=max_length,
            truncation=truncation,
            buckets=buckets,
        )
        return self

    def _setup(
        self,
        tokenizer: Tokenizer,
        *,
        max_length: int,
        truncation: Truncation,
        buckets: Sequence[int],
    ) -> None:
        if truncation not in ("truncate", "reject"):
            raise ValueError(f"truncation must be 'truncate' or 'reject', got {truncation!r}")
        if any(b <= 0 for b in buckets):
            raise ValueError(f"buckets must be positive, got {list(buckets)}")
        padding = tokenizer.padding
        self._pad_id = int(padding["pad_id"]) if padding else 0
        self._pad_type_id = int(padding["pad_type_id"]) if padding else 0
        # tokenizer.json files often carry fixed padding/truncation from export time; this class
        # owns both so that lengths, flags and shapes follow only its own arguments.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._specials = tokenizer.num_special_tokens_to_add(is_pair=False)
        if max_length <= self._specials:
            raise ValueError(
                f"max_length {max_length} leaves no room beside {self._specials} special tokens"
            )
        self._tokenizer = tokenizer
        self.max_length = max_length
        self.truncation: Truncation = truncation
        self.buckets = tuple(sorted(set(buckets)))

    def bucket(self, length: int) -> int:
        """Padded length for a batch whose longest text has ``length`` tokens."""
        if not 0 <= length <= self.max_length:
            raise ValueError(f"length {length} is outside 0..{self.max_length}")
        for size in self.buckets:
            if size >= length:
                return min(size, self.max_length)
        return self.max_length

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Tokenise with [CLS]/[SEP], truncate (or reject) past ``max_length``, pad to a bucket."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not a single str")
        raw = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        room = self.max_length - self._specials
        rows: list[tuple[list[int], list[int], list[int]]] = []
        truncated: list[bool] = []
        for index, encoding in enumerate(raw):
            cut = len(encoding.ids) > room
            if cut:
                if self.truncation == "reject":
                    raise TextTooLong(index, len(encoding.ids) + self._specials, self.max_length)
                # Truncating before the special tokens are added keeps the final [SEP], as HF does.
                encoding.truncate(room)
            done = self._tokenizer.post_process(encoding)
            rows.append((done.ids, done.attention_mask, done.type_ids))
            truncated.append(cut)

        lengths = [len(ids) for ids, _, _ in rows]
        width = self.bucket(max(lengths, default=0))
        input_ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        token_type_ids = np.full((len(rows), width), self._pad_type_id, dtype=np.int64)
        for i, (ids, mask, types) in enumerate(rows):
            input_ids[i, : len(ids)] = ids
            attention_mask[i, : len(ids)] = mask
            token_type_ids[i, : len(ids)] = types
        return Encoded(input_ids, attention_mask, token_type_ids, lengths, truncated)
