"""Signed deletion receipts: Ed25519 over the receipt's canonical JSON, verifiable offline.

Canonical bytes are the JSON with sorted keys, no whitespace, UTF-8; for receipts (strings,
integers, booleans, null, lists, objects; no floats) this is the RFC 8785 form.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ReceiptSigner:
    def __init__(self, pem: bytes) -> None:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the receipt signing key must be an Ed25519 key (PEM, PKCS#8)")
        self._key = key
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._public_raw = raw
        # The key id is derived from the public key, so that rotated keys never collide.
        self.kid = b64url(hashlib.sha256(raw).digest())[:16]

    def sign(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """The signed document clients get: {receipt, signature, kid}."""
        signature = self._key.sign(canonical(receipt))
        return {"receipt": receipt, "signature": b64url(signature), "kid": self.kid}

    @property
    def x(self) -> str:
        """The public key, base64url (the JWK `x` member)."""
        return b64url(self._public_raw)

    def jwks(self) -> dict[str, Any]:
        return jwks([(self.kid, self.x)])


def jwks(keys: list[tuple[str, str]]) -> dict[str, Any]:
    """A JWKS of Ed25519 public keys given as (kid, x)."""
    return {
        "keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig"} for kid, x in keys
        ]
    }


def verify(document: dict[str, Any], key_set: dict[str, Any]) -> bool:
    """True when the document's signature holds under the JWKS key named by its kid."""
    keys = {
        k.get("kid"): k
        for k in key_set.get("keys", [])
        if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"
    }
    jwk = keys.get(document.get("kid"))
    if jwk is None or not isinstance(document.get("receipt"), dict):
        return False
    try:
        public = Ed25519PublicKey.from_public_bytes(_unb64url(jwk["x"]))
        public.verify(_unb64url(str(document["signature"])), canonical(document["receipt"]))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return True


def new_key_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_signer(configured: str, var_dir: Path, embedded: bool) -> ReceiptSigner | None:
    """The configured key; in the embedded default one generated into var_dir on first use."""
    if configured:
        return ReceiptSigner(configured.encode())
    if not embedded:
        return None
    path = var_dir / "receipt-signing-key.pem"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(new_key_pem())
    return ReceiptSigner(path.read_bytes())
