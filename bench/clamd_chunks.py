"""INSTREAM throughput by chunk size against a throwaway clamd: python -m bench.clamd_chunks."""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import time

import clamd

from gateway.scanning import ClamdScanner
from infra.localstack.clamd import ClamdProcess

MiB = 1024 * 1024


def time_scanner(address: str, data: bytes, chunk_size: int) -> tuple[float, str]:
    """Seconds for one ClamdScanner INSTREAM of data (send + scan + verdict)."""
    scanner = ClamdScanner([address], timeout=60.0, chunk_size=chunk_size)
    scanner.info()  # warm the VERSION cache so only INSTREAM is timed
    started = time.perf_counter()
    with scanner.stream() as scan:
        # Writes arrive as the upload path would hand them over: 64 KiB reads.
        view = memoryview(data)
        for offset in range(0, len(view), 64 * 1024):
            scan.write(view[offset:offset + 64 * 1024])
        result = scan.finish()
    return time.perf_counter() - started, result.status.value


def time_package_instream(address: str, data: bytes) -> tuple[float, str]:
    """Seconds for the clamd package's own instream() (fixed 1 KiB chunks)."""
    host, port = address.rsplit(":", 1)
    client = clamd.ClamdNetworkSocket(host, int(port), timeout=60.0)
    started = time.perf_counter()
    reply = client.instream(io.BytesIO(data))
    return time.perf_counter() - started, str(reply["stream"][0])


def main() -> None:
    """Start clamd, scan one buffer with each chunk size, print MB/s."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=100, help="buffer size in MiB")
    parser.add_argument("--rounds", type=int, default=2, help="best of N per variant")
    args = parser.parse_args()
    # Incompressible bytes, like the scanned PDFs and images the gateway receives.
    data = random.Random(1234).randbytes(args.mb * MiB)
    with (
        tempfile.TemporaryDirectory(prefix="bench-clamd-") as workdir,
        ClamdProcess(workdir, overrides={"DisableCache": "yes"}) as process,  # every round a real scan
    ):
        print(f"clamd {process.address}, buffer {args.mb} MiB, best of {args.rounds}")
        variants = [
            ("clamd package instream (1 KiB)", lambda: time_package_instream(process.address, data)),
        ] + [
            (f"ClamdScanner chunk {size // 1024} KiB",
             lambda size=size: time_scanner(process.address, data, size))
            for size in (1024, 64 * 1024, 256 * 1024)
        ]
        for label, run in variants:
            seconds, status = min(run() for _ in range(args.rounds))
            print(f"{label:34s} {args.mb / seconds:8.1f} MB/s  ({seconds:.2f} s, {status})")


if __name__ == "__main__":
    main()
