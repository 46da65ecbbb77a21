"""A served policy for benchmarks and tests: ``collectrl serve`` in a child process on a free port of
127.0.0.1, stopped cleanly when the block ends (so its decision logs are flushed)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from policies.workers import ALL_READY


class ServedURL(str):
    """The base URL of a server started by :func:`serving`, with the server's process id."""

    pid: int


def _said(errors: Any, line: str) -> bool:
    """Whether the server's stderr file has ``line`` so far (read with ``pread``: the child shares the
    file's offset, which a seek would move under its writes)."""
    fd = errors.fileno()
    return line in os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


@contextlib.contextmanager
def serving(artifact: str, *args: str, ready_within_s: float = 30.0) -> Iterator[ServedURL]:
    """Run ``collectrl serve ARTIFACT`` on a free port of 127.0.0.1 (with extra ``args``) until the
    block ends, then stop it cleanly (SIGTERM, so buffered decision logs are flushed); yields the
    base URL once ``/readyz`` answers, and raises if the server exits or is not ready in time."""
    import signal
    import socket
    import subprocess
    import sys
    import tempfile
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "experiments.cli", "serve", artifact, "--host", "127.0.0.1", "--port", str(port), *args]
    errors = tempfile.TemporaryFile("w+")  # noqa: SIM115  (a file, not a pipe: a chatty server never blocks; closed below)
    proc = subprocess.Popen(cmd, stderr=errors, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    # with several workers, wait until every one serves (the supervisor says so), not just the first
    several = "--workers" in args and int(args[list(args).index("--workers") + 1]) > 1
    try:
        deadline = time.monotonic() + ready_within_s
        while True:
            if proc.poll() is not None:
                errors.seek(0)
                raise RuntimeError(f"collectrl serve exited with code {proc.returncode}: {errors.read().strip()}")
            try:
                if urllib.request.urlopen(base + "/readyz", timeout=1).status == 200 and (not several or _said(errors, ALL_READY)):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"collectrl serve was not ready on {base} within {ready_within_s:.0f} s")
            time.sleep(0.1)
        served = ServedURL(base)
        served.pid = proc.pid
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        errors.close()
