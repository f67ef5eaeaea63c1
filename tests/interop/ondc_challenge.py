#!/usr/bin/env python3
"""An independent implementation of the ONDC registry's on_subscribe challenge, for interop tests.

The `cryptography` package's X25519 and AES-256-ECB with PKCS#7 padding; keys as the registry
publishes them (public keys DER SubjectPublicKeyInfo, base64).

    ondc_challenge.py keypair                                -> "PRIVATE_RAW_B64 PUBLIC_DER_B64"
    ondc_challenge.py encrypt PRIVATE_RAW_B64 PEER_DER_B64 TEXT  -> challenge (base64) on stdout
    ondc_challenge.py decrypt PRIVATE_RAW_B64 PEER_DER_B64 CHALLENGE -> plaintext on stdout
    ondc_challenge.py parse-der PUBLIC_DER_B64               -> raw public key (base64), exit 1 if invalid
"""
import base64
import sys

from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def private(b64: str) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(base64.b64decode(b64))


def public(der_b64: str) -> X25519PublicKey:
    key = serialization.load_der_public_key(base64.b64decode(der_b64))
    if not isinstance(key, X25519PublicKey):
        raise SystemExit("not an X25519 public key")
    return key


def raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def aes(ours: str, peer: str) -> Cipher:
    return Cipher(algorithms.AES(private(ours).exchange(public(peer))), modes.ECB())


def main(argv):
    cmd = argv[1]
    if cmd == "keypair":
        key = X25519PrivateKey.generate()
        priv = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        print(base64.b64encode(priv).decode(), base64.b64encode(der).decode())
    elif cmd == "encrypt":
        padder = padding.PKCS7(128).padder()
        data = padder.update(argv[4].encode()) + padder.finalize()
        enc = aes(argv[2], argv[3]).encryptor()
        print(base64.b64encode(enc.update(data) + enc.finalize()).decode())
    elif cmd == "decrypt":
        dec = aes(argv[2], argv[3]).decryptor()
        data = dec.update(base64.b64decode(argv[4])) + dec.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        print((unpadder.update(data) + unpadder.finalize()).decode())
    elif cmd == "parse-der":
        print(base64.b64encode(raw(public(argv[2]))).decode())
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
