"""Secrets kept at rest, such as a vendor's API credentials in PostgreSQL, sealed with
AES-256-GCM under the key in ``SYNCSUITE_DATA_KEY``.

A sealed value is text: ``sealed:v1:`` and the URL-safe base64 of a random 12-byte nonce
followed by the ciphertext and its tag. The *purpose* (e.g. the column's name) is
authenticated with it, so a sealed value copied to another place does not open there. A value
without the prefix was stored before sealing existed: :meth:`Sealer.is_sealed` finds those,
to be sealed in place.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["SEALED_PREFIX", "Sealer", "SealingError"]

SEALED_PREFIX: Final = "sealed:v1:"
_NONCE_BYTES: Final = 12
_KEY_BYTES: Final = 32


class SealingError(ValueError):
    """A key that is not a key, or a sealed value that does not open with it."""


def _decode_base64(text: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise SealingError("is not base64") from None


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise SealingError(f"the key must be {_KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_setting(cls, value: str) -> Sealer:
        """From the base64 of 32 random bytes (standard or URL-safe, padded or not), e.g.
        ``openssl rand -base64 32``."""
        try:
            return cls(_decode_base64(value))
        except SealingError as error:
            raise SealingError(f"SYNCSUITE_DATA_KEY {error}: give the base64 of 32 random"
                               " bytes (openssl rand -base64 32)") from None

    @staticmethod
    def is_sealed(stored: str) -> bool:
        return stored.startswith(SEALED_PREFIX)

    def seal(self, plaintext: str, purpose: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), purpose.encode())
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def unseal(self, stored: str, purpose: str) -> str:
        if not self.is_sealed(stored):
            raise SealingError("the value is not sealed")
        raw = _decode_base64(stored[len(SEALED_PREFIX):])
        try:
            return self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                      purpose.encode()).decode()
        except (InvalidTag, ValueError):
            raise SealingError("a sealed value does not open with this key (another key, or"
                               " the value was altered or moved)") from None
