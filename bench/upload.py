"""Large-document upload: the gateway beside its raw floor (clamd INSTREAM alone, S3 multipart alone).

    .venv/bin/python -m bench.upload [--sizes 10,100,500] [--rounds 1] [--profile DIR]

For each size a PDF is written with tests.samples.write_large_pdf and sent
three ways in the same run, against the same services:

- gateway: POST /v1/requests/{id}/documents to ONE gunicorn worker, the
  multipart body streamed from disk in 1 MiB pieces with a Content-Length;
  seconds from the first byte sent to the 201;
- clamd: the same bytes straight to clamd INSTREAM in 64 KiB frames;
- S3: the same bytes to the same moto endpoint with boto3 upload_file
  (8 MiB parts, threads on), on a client configured as the gateway's
  (gateway.adapters.build_store: over plain HTTP to loopback, part bodies
  unsigned, as over HTTPS to S3).

The gateway streams each chunk to clamd and to S3 at once, so its floor is
the slower raw leg; the ratio gateway / floor is printed beside the 1.2
target.  Memory is the worker's peak RSS growth over its RSS once warmed: a
fresh gunicorn per size, warmed by a small upload, its VmHWM reset
(/proc/PID/clear_refs) before each upload so VmHWM is that upload's peak,
and VmRSS also sampled every 20 ms.  CPU seconds of every process are printed too: on
a 2-core machine the client, the worker, clamd and moto share two cores.
clamd runs with its clean-file cache off (bench/_stack.py says why).

--profile DIR also records the worker with py-spy during each gateway upload
(pip install py-spy into .venv) and prints where the request thread spent
its time: body read, SHA-256, clamd frames, S3 buffering, PDF spool, the
clamd verdict wait, S3 completion, the PDF check, the database.  Profiled
runs are a little slower; take the table from a run without it.

Nothing here asserts; the targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import linecache
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from boto3.s3.transfer import TransferConfig

from bench._stack import BUCKET, KMS_ALIAS, BenchStack
from gateway.adapters import build_store
from gateway.scanning import ClamdScanner
from tests.factories import request_body
from tests.samples import write_large_pdf

MIB = 1024 * 1024
BODY_PIECE = MIB  # the client's read size for the multipart body
CLAMD_PIECE = 64 * 1024  # raw leg: INSTREAM frames and file reads
S3_PART = 8 * MIB  # raw leg: same part size as the gateway's S3 store
WARMUP_MB = 9  # over one S3 part, so the warm-up takes the multipart path too
SAMPLE_EVERY = 0.020
PROFILE_RATE = 200  # py-spy samples per second
RATIO_TARGET = 1.2  # issue 18 (an earlier issue asked for 1.3)
RSS_TARGET_MB = 64
BOUNDARY = "bench-upload-9f2c41d7"
# With infra/clamav's MaxScanSize 600M, clamd refuses some 500 MB PDFs of random
# image bytes (7 of 16 tried while writing this) as Heuristics.Limits.Exceeded.MaxScanSize,
# depending on their content; the gateway then answers 422. The
# benchmark times accepted uploads, so such a file is replaced by a new one.
SCAN_LIMIT_SIGNATURE = "Heuristics.Limits.Exceeded"
REDRAWS = 3
TICKS = os.sysconf("SC_CLK_TCK")


# --- process figures from /proc ---------------------------------------------------

def proc_status_bytes(pid: int, field_name: str) -> int:
    """A "kB" line of /proc/PID/status (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field_name)


def reset_peak_rss(pid: int) -> bool:
    """Make VmHWM equal the current RSS (Linux ≥ 4.0, own processes); False where refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return proc_status_bytes(pid, "VmHWM") <= proc_status_bytes(pid, "VmRSS") + MIB


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


class CpuMeter:
    """CPU seconds each named process spends between start() and stop()."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.used: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc_info) -> None:
        self.used = {name: cpu_seconds(pid) - self._start[name] for name, pid in self.pids.items()}

    def line(self, wall: float) -> str:
        """'CPU s: worker 3.1, clamd 0.4, ...  (= 1.60 cores busy)' over `wall` seconds."""
        parts = ", ".join(f"{name} {used:.1f}" for name, used in self.used.items())
        return f"CPU s: {parts}  (= {sum(self.used.values()) / wall:.2f} cores busy)"


class RssSampler(threading.Thread):
    """Reads VmRSS of one process every SAMPLE_EVERY seconds until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = proc_status_bytes(pid, "VmRSS")
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_EVERY):
            try:
                self.peak = max(self.peak, proc_status_bytes(self.pid, "VmRSS"))
                self.samples += 1
            except (OSError, KeyError):
                return

    def stop(self) -> int:
        """Stop sampling; the largest VmRSS seen, in bytes."""
        self._stop_event.set()
        self.join()
        return self.peak


# --- the three legs ----------------------------------------------------------------

@dataclass
class Leg:
    """One timed transfer."""

    seconds: float
    detail: str = ""
    ok: bool = True
    extra: dict = field(default_factory=dict)


def multipart_frame(filename: str) -> tuple[bytes, bytes]:
    """The multipart preamble (kind field, file part headers) and the closing boundary."""
    preamble = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nauthorization\r\n"
                f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
                f"Content-Type: application/pdf\r\n\r\n").encode()
    return preamble, f"\r\n--{BOUNDARY}--\r\n".encode()


def body_pieces(path: Path, preamble: bytes, closing: bytes):
    """The whole multipart body, read from disk as it is sent (never all in memory)."""
    yield preamble
    with open(path, "rb", buffering=0) as fh:
        while piece := fh.read(BODY_PIECE):
            yield piece
    yield closing


def create_draft(gateway, api_key: str) -> str:
    """A fresh draft request; its id."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=60)
    try:
        connection.request("POST", "/v1/requests", body=json.dumps(request_body()),
                           headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 201:
            raise RuntimeError(f"creating a draft answered {response.status}: {body[:300]!r}")
        return json.loads(body)["id"]
    finally:
        connection.close()


def gateway_upload(gateway, api_key: str, path: Path) -> Leg:
    """Stream path to the documents endpoint of a fresh draft; seconds from first byte sent to the answer."""
    request_id = create_draft(gateway, api_key)
    preamble, closing = multipart_frame(path.name)
    length = len(preamble) + path.stat().st_size + len(closing)
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=600)
    connection.connect()  # the TCP handshake is not part of the upload
    started = body_sent = time.perf_counter()
    try:
        connection.putrequest("POST", f"/v1/requests/{request_id}/documents")
        for name, value in (("Authorization", f"Bearer {api_key}"),
                            ("Content-Type", f"multipart/form-data; boundary={BOUNDARY}"),
                            ("Content-Length", str(length))):
            connection.putheader(name, value)
        connection.endheaders()
        for piece in body_pieces(path, preamble, closing):
            connection.send(piece)
        body_sent = time.perf_counter()
        response = connection.getresponse()
        answered = time.perf_counter()
        payload = response.read()
    except (OSError, http.client.HTTPException) as error:  # reported in the table, not raised
        failed = time.perf_counter()
        return Leg(failed - started, f"{type(error).__name__}: {error}", False, {"after_body": failed - body_sent})
    finally:
        connection.close()
    ok = response.status == 201
    detail = "" if ok else f"HTTP {response.status}: {payload[:300].decode(errors='replace')}"
    return Leg(answered - started, detail, ok, {"after_body": answered - body_sent})


def clamd_leg(address: str, path: Path) -> Leg:
    """The same bytes straight to clamd INSTREAM, 64 KiB at a time."""
    scanner = ClamdScanner([address], timeout=120.0, chunk_size=CLAMD_PIECE, scan_timeout=600.0)
    scanner.info()  # VERSION is cached, as in a warm gateway
    started = time.perf_counter()
    with scanner.stream() as scan, open(path, "rb", buffering=0) as fh:
        while piece := fh.read(CLAMD_PIECE):
            scan.write(piece)
        sent = time.perf_counter()
        result = scan.finish()
    done = time.perf_counter()
    return Leg(done - started, result.status.value, result.is_clean, {"verdict_wait": done - sent})


def s3_leg(s3_client, path: Path) -> Leg:
    """The same bytes straight to moto with boto3's managed multipart upload."""
    config = TransferConfig(multipart_threshold=S3_PART, multipart_chunksize=S3_PART, use_threads=True)
    key = f"bench-raw/{uuid.uuid4()}"
    started = time.perf_counter()
    # The same SSE-KMS request arguments every gateway write carries.
    s3_client.upload_file(str(path), BUCKET, key, Config=config,
                          ExtraArgs={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KMS_ALIAS})
    return Leg(time.perf_counter() - started)


# --- optional py-spy profile of the worker ---------------------------------------------

def py_spy_binary() -> str | None:
    """py-spy next to this interpreter or on PATH."""
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


class Profiler:
    """`py-spy record` (raw collapsed stacks) of one process while the block runs."""

    def __init__(self, pid: int, out: Path):
        self.pid, self.out = pid, out
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Profiler:
        binary = py_spy_binary()
        if binary is None:
            print("  (py-spy not installed: no profile)")
            return self
        self.process = subprocess.Popen(
            [binary, "record", "--pid", str(self.pid), "--rate", str(PROFILE_RATE), "--format", "raw", "--threads",
             "--idle", "--nonblocking", "--output", str(self.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # py-spy attaches before the upload starts
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        if not self.out.exists():
            print(f"  (py-spy wrote no profile: {err.decode(errors='replace')[-300:]})")


# Where the request thread's samples fall, first match wins (matched against the whole stack).
PHASES = (
    ("clamd: waiting for the verdict after the last byte", ("ClamdStream.finish ",)),
    ("S3: last parts, CompleteMultipartUpload, tagging", ("S3StagedUpload.complete ",)),
    ("PDF check (pypdf on the spool file)", ("inspect_pdf ",)),
    ("DB row, audit, promote (S3 tagging), commit", ("accept (gateway/intake/documents.py", "_accept (")),
    ("clamd: sending frames", ("ClamdStream.write ",)),
    ("S3: buffering, cutting parts, waiting for a free slot", ("S3StagedUpload.write ",)),
    ("S3: waiting for the spool-fed S3 lane to catch up", ("_SpoolFedLane.finish ",)),
    ("body: socket read + multipart parsing", ("Part.chunks ", "MultipartReader.")),
    ("PDF spool write", ("spool.write",)),
    ("SHA-256", ("hasher.update",)),
    ("ingest, other lines", ("ingest (gateway/intake/uploads.py",)),
    ("view: auth, lookups, response", ("upload_document ",)),
)
REPO = Path(__file__).resolve().parent.parent


def _source_line(frame: str) -> str:
    """The source text a "func (path:line)" frame points at, when it is one of ours."""
    _, _, where = frame.rpartition(" (")
    path, _, line = where.rstrip(")").rpartition(":")
    if not line.isdigit() or not (REPO / path).is_file():
        return ""
    return linecache.getline(str(REPO / path), int(line)).strip()


def summarise_profile(path: Path, rate: int = PROFILE_RATE) -> list[str]:
    """Seconds of the request thread per phase, and what the S3 part threads did, from a raw py-spy file."""
    phases: Counter[str] = Counter()
    part_threads: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread, n = frames[0].partition(": ")[2], int(count)
        if thread.startswith("s3-part"):
            if "_upload_part " not in stack:
                part_threads["idle (no part to send)"] += n
            elif "_send_request " in stack or "sendall " in stack or "_send_output " in stack:
                part_threads["sending the part to moto"] += n
            elif "_get_response " in stack or "getresponse " in stack or "readinto " in stack:
                part_threads["waiting for moto's answer"] += n
            elif "checksum" in stack.lower():
                part_threads["computing the SHA-256 part checksum"] += n
            else:
                part_threads["botocore, other"] += n
            continue
        if "upload_document " not in stack:  # the request thread (gthread: a pool thread, not MainThread)
            continue  # the worker between requests, or the draft request
        text = stack + ";" + _source_line(frames[-1]) + ";" + _source_line(_innermost(frames, "ingest ("))
        phase = next((name for name, needles in PHASES if any(k in text for k in needles)), "other")
        phases[phase] += n
    total = sum(phases.values())
    out = [f"  py-spy, request thread ({total / rate:.2f} s sampled):"]
    out += [f"    {c / rate:6.2f} s  {c * 100 / max(total, 1):4.0f}%  {name}" for name, c in phases.most_common()]
    part_total = sum(part_threads.values())
    if part_total:
        out.append(f"  py-spy, S3 part threads ({part_total / rate:.2f} thread-s sampled):")
        out += [f"    {c / rate:6.2f} s  {c * 100 / part_total:4.0f}%  {name}"
                for name, c in part_threads.most_common()]
    return out


def _innermost(frames: list[str], prefix: str) -> str:
    """The deepest frame starting with prefix ('' if none)."""
    return next((f for f in reversed(frames) if f.startswith(prefix)), "")


# --- the run ---------------------------------------------------------------------------

@dataclass
class Row:
    """Best-of-rounds figures for one size."""

    size_mb: float
    gateway: Leg
    clamd: Leg
    s3: Leg
    rss_growth: int  # bytes

    @property
    def floor(self) -> float:
        """The slower raw leg: the best the gateway could do overlapping both."""
        return max(self.clamd.seconds, self.s3.seconds)

    @property
    def ratio(self) -> float:
        """Gateway seconds over floor seconds."""
        return self.gateway.seconds / self.floor


def measure_size(stack: BenchStack, size_mb: int, rounds: int, workdir: Path, profile_dir: Path | None) -> Row:
    """Write one PDF, then time the gateway and both raw legs `rounds` times; best of each."""
    path = workdir / f"upload-{size_mb}mb.pdf"
    size = write_large_pdf(path, size_mb)
    warmup = workdir / "warmup.pdf"
    write_large_pdf(warmup, WARMUP_MB)
    mib = size / MIB
    print(f"\n{mib:.1f} MiB PDF ({size:,} bytes)", flush=True)
    # A fresh worker per size, so its peak RSS belongs to this size only.
    gateway = stack.start_gateway()
    best: dict[str, Leg] = {}
    peak_growth = 0
    try:
        (worker,) = gateway.worker_pids()
        fresh_rss = proc_status_bytes(worker, "VmRSS")
        warm = gateway_upload(gateway, stack.api_key, warmup)  # imports, first S3 multipart, pypdf, DB
        if not warm.ok:
            print(f"  warm-up upload failed: {warm.detail}")
        pids = {"worker": worker, "clamd": stack.clamd.pid, "moto": stack.moto.pid, "client": os.getpid()}
        raw_client = build_store(stack.settings).client  # the gateway's client configuration
        # Growth is counted from the warmed worker's RSS before the first measured upload, not from
        # just before each one: glibc keeps what a previous upload freed, which would hide it.
        warm_rss = proc_status_bytes(worker, "VmRSS")
        for round_number in range(1, rounds + 1):
            for attempt in range(1, REDRAWS + 2):
                profile = profile_dir / f"upload-{size_mb}mb-r{round_number}.txt" if profile_dir else None
                leg, growth = timed_gateway_upload(gateway, worker, stack.api_key, path, pids, profile,
                                                   (fresh_rss, warm_rss), f"round {round_number}")
                peak_growth = max(peak_growth, growth)
                stack.empty_bucket()  # moto keeps every object in memory
                if leg.ok or SCAN_LIMIT_SIGNATURE not in leg.detail or attempt > REDRAWS:
                    break
                # clamd's own limits refused this particular file (see REDRAWS): measure another one.
                print(f"  clamd refused this file on its scan limits; writing a new {size_mb} MB PDF "
                      f"({attempt} of {REDRAWS} redraws)", flush=True)
                write_large_pdf(path, size_mb)
            with CpuMeter(pids) as clamd_cpu:
                raw_clamd = clamd_leg(stack.clamd.address, path)
            print(f"  round {round_number} clamd    {raw_clamd.seconds:7.2f} s  {mib / raw_clamd.seconds:7.1f} MiB/s  "
                  f"({raw_clamd.detail}; verdict {raw_clamd.extra['verdict_wait']:.2f} s after the last frame)")
            print(f"          {clamd_cpu.line(raw_clamd.seconds)}")
            with CpuMeter(pids) as s3_cpu:
                raw_s3 = s3_leg(raw_client, path)
            print(f"  round {round_number} S3       {raw_s3.seconds:7.2f} s  {mib / raw_s3.seconds:7.1f} MiB/s")
            print(f"          {s3_cpu.line(raw_s3.seconds)}", flush=True)
            stack.empty_bucket()
            for name, result in (("gateway", leg), ("clamd", raw_clamd), ("s3", raw_s3)):
                # A successful upload always beats a failed one, whatever their times.
                if name not in best or (result.ok, -result.seconds) > (best[name].ok, -best[name].seconds):
                    best[name] = result
    finally:
        gateway.stop()
        path.unlink(missing_ok=True)
        warmup.unlink(missing_ok=True)
    return Row(mib, best["gateway"], best["clamd"], best["s3"], peak_growth)


def timed_gateway_upload(gateway, worker: int, api_key: str, path: Path, pids: dict[str, int],
                         profile: Path | None, rss_before: tuple[int, int], label: str) -> tuple[Leg, int]:
    """One gateway upload with the worker's RSS watched (and py-spy, if asked); prints it.

    Returns the leg and the peak RSS growth over the warmed worker's RSS (rss_before is (fresh, warm)).
    """
    mib = path.stat().st_size / MIB
    fresh_rss, warm_rss = rss_before
    before = proc_status_bytes(worker, "VmRSS")
    hwm_reset = reset_peak_rss(worker)
    sampler = RssSampler(worker)
    sampler.start()
    with Profiler(worker, profile) if profile else contextlib.nullcontext(), CpuMeter(pids) as cpu:
        leg = gateway_upload(gateway, api_key, path)
    sampled_peak = sampler.stop()
    hwm = proc_status_bytes(worker, "VmHWM")
    growth = (max(sampled_peak, hwm) if hwm_reset else sampled_peak) - warm_rss
    print(f"  {label} gateway  {leg.seconds:7.2f} s  {mib / leg.seconds:7.1f} MiB/s  "
          f"(answer {leg.extra['after_body']:.2f} s after the last byte)"
          + ("" if leg.ok else f"\n          FAILED {leg.detail.strip()}"))
    print(f"          worker RSS: fresh {fresh_rss / MIB:.0f} MiB, warmed {warm_rss / MIB:.0f} MiB, "
          f"before this upload {before / MIB:.0f} MiB, "
          f"peak sampled {sampled_peak / MIB:.0f} MiB ({sampler.samples} samples), "
          f"VmHWM {hwm / MIB:.0f} MiB{'' if hwm_reset else ' (not reset: since process start)'}"
          f" -> growth over warmed {growth / MIB:.1f} MiB")
    print(f"          {cpu.line(leg.seconds)}", flush=True)
    if profile and profile.exists():
        print("\n".join(summarise_profile(profile)), flush=True)
    return leg, growth


def print_table(rows: list[Row], rounds: int) -> None:
    """The summary: gateway beside the slower raw leg, with the targets."""
    print(f"\nUpload benchmark (best of {rounds}; 1 gunicorn worker; MiB = 2^20 bytes)")
    header = (f"{'size MiB':>8} {'gw s':>7} {'gw MiB/s':>9} {'clamd s':>8} {'S3 s':>7} {'floor s':>8} "
              f"{'gw/floor':>9} {'≤1.2?':>6} {'RSS +MiB':>9} {'≤64?':>5}")
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio_ok = "yes" if row.gateway.ok and row.ratio <= RATIO_TARGET else "NO"
        rss_ok = "yes" if row.rss_growth <= RSS_TARGET_MB * MIB else "NO"
        print(f"{row.size_mb:8.1f} {row.gateway.seconds:7.2f} {row.size_mb / row.gateway.seconds:9.1f} "
              f"{row.clamd.seconds:8.2f} {row.s3.seconds:7.2f} {row.floor:8.2f} {row.ratio:9.2f} {ratio_ok:>6} "
              f"{row.rss_growth / MIB:9.1f} {rss_ok:>5}"
              + ("" if row.gateway.ok else "   (gateway upload FAILED)"))
    print("\nwhere the time goes (same runs; 'body' ends when the client's last send returns, a few MiB may still"
          " sit in socket buffers):")
    print(f"{'size MiB':>8} {'gw body s':>10} {'gw after body s':>16} {'clamd send s':>13} {'clamd verdict s':>16}")
    for row in rows:
        verdict = row.clamd.extra["verdict_wait"]
        print(f"{row.size_mb:8.1f} {row.gateway.seconds - row.gateway.extra['after_body']:10.2f} "
              f"{row.gateway.extra['after_body']:16.2f} {row.clamd.seconds - verdict:13.2f} {verdict:16.2f}")
    print(f"targets: gateway seconds ≤ {RATIO_TARGET} × the slower raw leg (clamd INSTREAM 64 KiB frames, or "
          f"boto3 upload_file 8 MiB parts); worker peak RSS growth ≤ {RSS_TARGET_MB} MiB")


def main() -> None:
    """Start the stack, measure each size, print the table, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,500", help="comma-separated PDF sizes in MB (default 10,100,500)")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per size; the best is tabled")
    parser.add_argument("--profile", type=Path, default=None,
                        help="directory for py-spy profiles of the worker during each gateway upload")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    # The worker must accept the largest size whole.
    max_upload = max(600 * MIB, (max(sizes) + 16) * MIB)
    started = time.perf_counter()
    with BenchStack(max_upload_bytes=max_upload) as stack, \
            tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        info = ClamdScanner([stack.clamd.address]).info()
        print(f"stack: {info.engine} at {stack.clamd.address}, moto at {stack.moto.endpoint_url}, "
              f"redis {stack.settings.redis_url}, SQLite; {os.cpu_count()} CPUs; "
              f"max_upload_bytes {stack.settings.max_upload_bytes // MIB} MiB")
        rows = [measure_size(stack, size, args.rounds, Path(tmp), args.profile) for size in sizes]
        print_table(rows, args.rounds)
    print(f"\n(total {time.perf_counter() - started:.0f} s including stack start-up and PDF writing)")


if __name__ == "__main__":
    main()
