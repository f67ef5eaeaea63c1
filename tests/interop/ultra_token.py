#!/usr/bin/env python3
"""An independent check of a Flipkart Ultra secureToken (RS256 JWT), for interop tests.

The `cryptography` package's RSA PKCS#1 v1.5 + SHA-256 verification and plain base64url and
json from the standard library: no JWT library shared with the adapter.

    ultra_token.py PUBLIC_KEY_PEM_FILE TOKEN CLIENT_ID NOW  -> prints the claims, exit 0 if valid
"""
import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def main() -> int:
    pem_file, token, client_id, now = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with open(pem_file, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(b64url(header_b64))
    claims = json.loads(b64url(payload_b64))
    if header.get("alg") != "RS256" or header.get("typ") != "JWT":
        print(f"bad header {header}", file=sys.stderr)
        return 1
    try:
        key.verify(
            b64url(signature_b64),
            f"{header_b64}.{payload_b64}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature:
        print("signature does not verify", file=sys.stderr)
        return 1
    problems = []
    if claims.get("iss") != client_id:
        problems.append(f"iss {claims.get('iss')!r} is not {client_id!r}")
    if not claims.get("iat", now + 1) <= now:
        problems.append("iat is not in the past")
    if not claims.get("exp", 0) > now:
        problems.append("exp is not in the future")
    if claims.get("exp", 0) - claims.get("iat", 0) > 1000:
        problems.append("exp - iat > 1000")
    if problems:
        print("; ".join(problems), file=sys.stderr)
        return 1
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
