#!/usr/bin/env python3
"""An independent implementation of Beckn HTTP signatures (BECKN-006), for interop tests.

hashlib's BLAKE2b-512 for the digest, the `cryptography` package's ed25519 for signatures.

    beckn_signature.py sign   BODY_FILE PRIVATE_KEY_B64 KEY_ID CREATED EXPIRES  -> header on stdout
    beckn_signature.py verify BODY_FILE PUBLIC_KEY_B64 HEADER NOW               -> exit 0 if valid
"""
import base64
import hashlib
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


def signing_string(body: bytes, created: int, expires: int) -> bytes:
    digest = base64.b64encode(hashlib.blake2b(body, digest_size=64).digest()).decode()
    return f"(created): {created}\n(expires): {expires}\ndigest: BLAKE-512={digest}".encode()


def sign(body: bytes, private_b64: str, key_id: str, created: int, expires: int) -> str:
    seed = base64.b64decode(private_b64)[:32]  # 32-byte seed, or libsodium's seed+public
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signature = base64.b64encode(key.sign(signing_string(body, created, expires))).decode()
    return (
        f'Signature keyId="{key_id}|ed25519",algorithm="ed25519",created="{created}",'
        f'expires="{expires}",headers="(created) (expires) digest",signature="{signature}"'
    )


def verify(body: bytes, public_b64: str, header: str, now: int) -> bool:
    fields = dict(re.findall(r'(\w+)="([^"]*)"', header))
    created, expires = int(fields["created"]), int(fields["expires"])
    if created > now + 5 or expires < now:
        return False
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
    try:
        key.verify(base64.b64decode(fields["signature"]), signing_string(body, created, expires))
        return True
    except InvalidSignature:
        return False


def main() -> int:
    mode, body_file = sys.argv[1], sys.argv[2]
    with open(body_file, "rb") as f:
        body = f.read()
    if mode == "sign":
        print(sign(body, sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])))
        return 0
    if mode == "verify":
        return 0 if verify(body, sys.argv[3], sys.argv[4], int(sys.argv[5])) else 1
    print(f"unknown mode {mode}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
