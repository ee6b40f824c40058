"""``reasoning.encrypted_content``: reasoning that stateless clients carry across turns.

With ``include: ["reasoning.encrypted_content"]`` a reasoning item leaves with its text
encrypted (Fernet: AES with an HMAC, so a tampered blob is refused).  When the client replays
the item, Parley decrypts it; an upstream with ``replay_reasoning: true`` then gets it back as
``reasoning_content`` on the assistant message that followed it (off by default, since some
providers refuse reasoning in their input).  The key is ``--reasoning-key``, or one generated
once in the data directory; every process of a deployment must share it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken


class ReasoningCipher:
    def __init__(self, key: str | bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_settings(cls, key: str | None, data_dir: Path) -> ReasoningCipher:
        if key:
            return cls(key)
        path = Path(data_dir) / "reasoning.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
        return cls(path.read_bytes().strip())

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str | None:
        """The text, or ``None`` when the token was not made with this key or was altered."""
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            return None
