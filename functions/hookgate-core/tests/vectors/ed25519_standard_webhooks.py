"""Standard Webhooks `v1a` (ed25519) test vectors, made by an implementation independent of
hookgate's: Python's `cryptography` package (OpenSSL).

    python ed25519_standard_webhooks.py > ed25519_standard_webhooks.json   # the fixture
    python ed25519_standard_webhooks.py --live                             # one fresh random case

The fixture is deterministic: seeds are SHA-256 of a label, and ed25519 signatures are
deterministic, so running it again gives the same file. Each case signs
`{msg_id}.{timestamp}.{body}` (the body's UTF-8 bytes) and writes the keys the way Standard
Webhooks does: `whpk_<base64 public key>` and `whsk_<base64 private key>`, the private key
either as the 32-byte seed or as the 64-byte seed followed by its public key (libsodium's form),
as `key_form` says. `--live` draws the seed, id, timestamp (now), body and key form at random.
"""

import base64
import hashlib
import json
import os
import random
import sys
import time

import cryptography
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def case(name: str, seed: bytes, key_form: str, msg_id: str, timestamp: int, body: str) -> dict:
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes_raw()
    signed = f"{msg_id}.{timestamp}.".encode("utf-8") + body.encode("utf-8")
    signature = private.sign(signed)
    secret = seed if key_form == "seed32" else seed + public
    return {
        "name": name,
        "key_form": key_form,
        "seed_hex": seed.hex(),
        "public_key_hex": public.hex(),
        "secret_key": "whsk_" + b64(secret),
        "public_key": "whpk_" + b64(public),
        "msg_id": msg_id,
        "timestamp": timestamp,
        "body": body,
        "signature": "v1a," + b64(signature),
    }


def seed_of(label: str) -> bytes:
    return hashlib.sha256(f"hookgate ed25519 vector: {label}".encode("utf-8")).digest()


def fixture() -> dict:
    cases = [
        case(
            "seed-32-json",
            seed_of("seed-32-json"),
            "seed32",
            "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            1800000000,
            '{"type":"invoice.paid","data":{"id":"in_1","amount":4200}}',
        ),
        case(
            "seed-and-public-64-unicode",
            seed_of("seed-and-public-64-unicode"),
            "seed_and_public64",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1800000120,
            '{"type": "order.paid",  "note": "caf\u00e9 \U0001f600 \\u00e9\\n"}\n',
        ),
        case(
            "seed-32-empty-body",
            seed_of("seed-32-empty-body"),
            "seed32",
            "msg_empty",
            1799999900,
            "",
        ),
        case(
            "seed-and-public-64-text",
            seed_of("seed-and-public-64-text"),
            "seed_and_public64",
            "evt 42/with.dots",
            1800000001,
            "plain text, not JSON: a.b.c",
        ),
    ]
    return {
        "generated_by": "functions/hookgate-core/tests/vectors/ed25519_standard_webhooks.py with Python cryptography "
        + cryptography.__version__.split(".")[0],
        "signed_content": "{msg_id}.{timestamp}.{body}",
        "cases": cases,
    }


def live() -> dict:
    rng = random.SystemRandom()
    alphabet = "abcXYZ019 .,:{}[]\"\\\u00e9\u4e2d\U0001f600\n"
    body = json.dumps(
        {"type": "live.test", "text": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))},
        ensure_ascii=rng.choice([True, False]),
    )
    return case(
        "live",
        os.urandom(32),
        rng.choice(["seed32", "seed_and_public64"]),
        "msg_" + os.urandom(12).hex(),
        int(time.time()),
        body,
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--live"]:
        print(json.dumps(live(), ensure_ascii=False))
    elif sys.argv[1:] == []:
        print(json.dumps(fixture(), indent=2, ensure_ascii=False))
    else:
        sys.exit("usage: ed25519_standard_webhooks.py [--live]")
