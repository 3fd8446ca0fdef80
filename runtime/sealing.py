"""Private files and Fernet sealing keys: from a setting, else generated once under the data dir."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr


def write_private(path: Path, content: bytes) -> None:
    """Create `path` readable by its owner only, atomically; an existing file is kept."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created it first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def configured_secret(value: SecretStr | None) -> str | None:
    """The value of an optional secret setting; an empty one counts as unset."""
    raw = value.get_secret_value() if value is not None else ""
    return raw or None


def load_or_create_fernet(path: Path, configured: SecretStr | None) -> Fernet:
    """The configured key, else the one stored at `path` (mode 0600), generated on first use."""
    key = configured_secret(configured)
    if key is None:
        if not path.exists():
            write_private(path, Fernet.generate_key())
        key = path.read_text().strip()
    return Fernet(key.encode())
