"""``collectrl serve --workers N``: N uvicorn worker processes on one port, each listening on its
own socket (``SO_REUSEPORT``), under a small supervisor.

Why not uvicorn's own ``--workers``: there the workers share one listening socket, and whichever
worker wakes first accepts every connection waiting. Clients that keep their connections open (load
balancers, wrk) then stay on the worker that accepted them; a burst of new connections can all land
on one worker while the others idle (measured: 26,793 requests on one worker, none on the other, in
one of three 4-second runs). With a socket per worker the kernel spreads new connections over the
workers by a hash of their addresses.

The supervisor starts the workers and then:
- restarts a worker that dies, unless it could not start serving at all (exit code 3: the artifact
  or the port is wrong, and a restart would fail the same way): then it stops the server;
- on SIGHUP passes the signal to every worker, and each reloads the artifacts from their
  directories in place (``policies.server``: requests in flight finish on the policy they started
  with, a bad artifact is refused and the current one keeps serving). The workers are not replaced:
  a worker that stops closes its own socket, and the kernel resets the connections already queued
  on it (with ``SO_REUSEPORT`` they are not handed to the other sockets), so replacing the workers
  under load failed requests;
- on SIGTERM or SIGINT stops every worker (SIGTERM: it finishes the requests it has, flushes its
  logs and exits) and exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

STOP_WITHIN_S = 30.0
ALL_READY = "all workers ready"  # said once on stderr when every worker has started serving
CANNOT_START = 3  # a worker's exit code when it could not start serving (uvicorn's own code for that)


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other sockets of this user may share (``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _serve_worker(host: str, port: int, ready: Any, env: dict[str, str]) -> None:
    """One worker process: its own socket, the app from ``policies.server.app_from_env``."""
    # SIGHUP means "reload" (the app sets its handler once it has started); until then it must not
    # end the process, as it would by default
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.environ.update(env)
    import uvicorn

    try:
        sock = listening_socket(host, port)
    except OSError as e:
        print(f"collectrl serve: worker {os.getpid()} cannot listen on {host}:{port}: {e.strerror}", file=sys.stderr)
        sys.exit(CANNOT_START)
    config = uvicorn.Config("policies.server:app_from_env", factory=True, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.started:
            ready.set()

    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run(sockets=[sock])
    except Exception as e:  # the app could not be built or started (or failed later: then the supervisor restarts it)
        print(f"collectrl serve: worker {os.getpid()}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1 if server.started else CANNOT_START)
    if not server.started:  # the app did not start (its lifespan failed): the supervisor must not retry
        sys.exit(CANNOT_START)


class _Worker:
    def __init__(self, ctx: Any, host: str, port: int, env: dict[str, str]) -> None:
        self.ready = ctx.Event()
        self.process = ctx.Process(target=_serve_worker, args=(host, port, self.ready, env), daemon=False)
        self.process.start()

    def stop(self) -> None:
        """SIGTERM (uvicorn finishes the requests it has and runs the app's shutdown), then wait."""
        if self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)  # type: ignore[arg-type]
        self.process.join(STOP_WITHIN_S)
        if self.process.is_alive():  # pragma: no cover - a worker stuck in shutdown
            self.process.kill()
            self.process.join()


def run(workers: int, host: str, port: int, env: dict[str, str]) -> int:
    """Serve with ``workers`` processes until SIGTERM or SIGINT; ``env`` is given to every worker
    (their settings). Returns the exit code."""
    # the port must be free: probed without SO_REUSEPORT, so that a second server started on the
    # same port by mistake is refused instead of silently sharing the traffic
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as e:
        print(f"collectrl serve: cannot listen on {host}:{port}: {e.strerror}", file=sys.stderr)
        return 1
    ctx = multiprocessing.get_context("spawn")
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _f: received.append(s)) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    pool: list[_Worker] = []
    try:
        pool = [_Worker(ctx, host, port, env) for _ in range(workers)]
        announced = False
        while True:
            time.sleep(0.2)
            if not announced and all(w.ready.is_set() for w in pool):
                # /readyz answers as soon as one worker serves; this line says every one does (until then
                # the kernel spreads new connections over the workers already listening only)
                print(f"collectrl serve: {ALL_READY} ({workers}) on {host}:{port}", file=sys.stderr, flush=True)
                announced = True
            while received:
                sig = received.pop(0)
                if sig != signal.SIGHUP:
                    return 0
                for w in pool:  # each worker reloads in place (see the module's docstring)
                    if w.process.is_alive():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(w.process.pid, signal.SIGHUP)  # type: ignore[arg-type]
            for i, w in enumerate(pool):
                code = w.process.exitcode
                if code == CANNOT_START:
                    print(f"collectrl serve: worker {w.process.pid} could not start serving (see above); stopping", file=sys.stderr)
                    return 1
                if code is not None:
                    print(f"collectrl serve: worker {w.process.pid} exited with code {code}; starting another", file=sys.stderr)
                    pool[i] = _Worker(ctx, host, port, env)
    finally:
        for w in pool:
            w.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
