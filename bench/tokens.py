"""Per-operation cost of TokenService.issue and .verify on SQLite, against raw pyjwt on the same key.

Run: `.venv/bin/python -m bench.tokens [--rounds N]`.  Prints medians in microseconds;
asserts nothing (figures vary by machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select


def _median_us(operation, rounds: int) -> float:
    """Median wall time of one call, in microseconds, after a short warm-up."""
    for _ in range(min(200, rounds)):
        operation()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        operation()
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1000


def main(argv: list[str] | None = None) -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args(argv)

    from gateway import migrate
    from gateway.auth.models import SigningKey
    from gateway.auth.tokens import ALGORITHM, LEEWAY, TOKEN_TYPE, TokenService
    from gateway.db import Database

    secret = "bench-secret-key-0123456789-abcdefghijklmnop"
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        migrate.upgrade(url)
        db = Database(url)
        service = TokenService(db, issuer="records-gateway", audience="records-gateway-api",
                               ttl=900, secret_key=secret)
        kid = service.ensure_key()
        issued = service.issue(subject="user-1", org_id="org-1", roles=["requester"], facilities=["tufts-mc"])
        token = issued.access_token
        service.verify(token)

        with db.transaction() as session:
            pem = session.scalar(select(SigningKey.private_pem).where(SigningKey.kid == kid))
        private = serialization.load_pem_private_key(pem.encode(), secret.encode())
        public = private.public_key()
        claims = service.verify(token)
        headers = {"typ": TOKEN_TYPE, "kid": kid}

        def raw_encode():
            jwt.encode(claims, private, algorithm=ALGORITHM, headers=headers)

        def raw_decode():
            jwt.decode(token, public, algorithms=[ALGORITHM], audience="records-gateway-api",
                       issuer="records-gateway", leeway=LEEWAY,
                       options={"require": ["exp", "iat", "nbf", "sub", "aud", "iss", "jti"]})

        def issue():
            service.issue(subject="user-1", org_id="org-1", roles=["requester"], facilities=["tufts-mc"])

        def verify():
            service.verify(token)

        figures = {name: _median_us(op, args.rounds) for name, op in
                   [("issue", issue), ("raw encode", raw_encode), ("verify", verify), ("raw decode", raw_decode)]}
        db.dispose()

    print(f"tokens bench: SQLite, Ed25519/EdDSA, median of {args.rounds} calls, Python {sys.version.split()[0]}, "
          f"pyjwt {jwt.__version__}")
    print(f"  TokenService.issue   {figures['issue']:8.1f} us   raw jwt.encode {figures['raw encode']:8.1f} us"
          f"   ratio {figures['issue'] / figures['raw encode']:.2f}x")
    print(f"  TokenService.verify  {figures['verify']:8.1f} us   raw jwt.decode {figures['raw decode']:8.1f} us"
          f"   ratio {figures['verify'] / figures['raw decode']:.2f}x")


if __name__ == "__main__":
    main()
