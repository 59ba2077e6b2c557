"""What the tests run against: the real api and pipeline, started on free
loopback ports over a throwaway database and stream, and a lossy proxy in
front of the api. Nothing here talks to anything but 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import httpx

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    """A running api and pipeline (or, with ``FLAGMETER_TEST_URL`` and
    ``FLAGMETER_TEST_KEY`` set, one that someone else runs)."""

    url: str
    key: str
    processes: List[subprocess.Popen] = field(default_factory=list)
    database: Optional[str] = None
    database_url: Optional[str] = None
    stream: Optional[str] = None
    logs: Optional[Path] = None

    @classmethod
    def start(cls, settings: Optional[Dict[str, str]] = None) -> "Stack":
        """Starts the binaries; ``settings`` adds to (or overrides) their
        environment."""
        if os.environ.get("FLAGMETER_TEST_URL"):
            return cls(os.environ["FLAGMETER_TEST_URL"], os.environ["FLAGMETER_TEST_KEY"])
        bin_dir = Path(os.environ.get("FLAGMETER_BIN_DIR", REPO / "target" / "debug"))
        if not bin_dir.is_absolute():
            bin_dir = REPO / bin_dir
        for name in ("flagmeter-api", "flagmeter-pipeline"):
            if not (bin_dir / name).exists():
                raise RuntimeError(f"{bin_dir / name} is missing: cargo build -p api -p pipeline")
        run = f"{os.getpid()}_{secrets.token_hex(4)}"
        pg_host = os.environ.get("PGHOST", "127.0.0.1")
        pg_port = os.environ.get("PGPORT", "5432")
        valkey = os.environ.get("VALKEY_URL", "redis://127.0.0.1:6379")
        stack = cls(
            url="",
            key=f"fmk_test_{secrets.token_hex(24)}",
            database=f"flagmeter_clients_py_{run}",
            stream=f"clients-py:{run}:events",
            logs=Path(tempfile.mkdtemp(prefix="flagmeter-clients-")),
        )
        stack._psql(f'CREATE DATABASE "{stack.database}"')
        port = free_port()
        stack.url = f"http://127.0.0.1:{port}"
        stack.database_url = f"postgres://postgres@{pg_host}:{pg_port}/{stack.database}"
        env = {
            **os.environ,
            "DATABASE_URL": stack.database_url,
            "VALKEY_URL": valkey,
            "FLAGMETER_STREAM": stack.stream,
            "FLAGMETER_API_ADDR": f"127.0.0.1:{port}",
            "FLAGMETER_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "FLAGMETER_ADMIN_KEY": stack.key,
            "FLAGMETER_RATE_LIMIT_PER_SEC": "0",
            "FLAGMETER_USAGE_CACHE_MS": "50",
            "FLAGMETER_BLOCK_MS": "200",
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
            **(settings or {}),
        }
        try:
            # The api applies the migrations; the pipeline starts after it answers.
            stack._spawn(bin_dir / "flagmeter-api", env)
            stack._wait_healthy()
            stack._spawn(bin_dir / "flagmeter-pipeline", env)
        except BaseException:
            stack.stop()
            raise
        return stack

    def _spawn(self, binary: Path, env: Dict[str, str]) -> None:
        assert self.logs is not None
        log = open(self.logs / f"{binary.name}.log", "wb")
        self.processes.append(subprocess.Popen([str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT))

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.processes[0].poll() is not None:
                raise RuntimeError(f"the api exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the api does not answer on {self.url}:\n{self.log_tail()}")

    def _psql(self, sql: str) -> None:
        subprocess.run(
            [
                "psql",
                "-h",
                os.environ.get("PGHOST", "127.0.0.1"),
                "-p",
                os.environ.get("PGPORT", "5432"),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-Atqc",
                sql,
            ],
            check=True,
            capture_output=True,
        )

    def log_tail(self, lines: int = 40) -> str:
        if not self.logs:
            return ""
        return "\n".join(
            f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for path in sorted(self.logs.glob("*.log"))
        )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        if self.database:
            try:
                self._psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            except subprocess.CalledProcessError:
                pass
        cli = shutil.which("valkey-cli") or shutil.which("redis-cli")
        if self.stream and cli:
            url = httpx.URL(os.environ.get("VALKEY_URL", "redis://127.0.0.1:6379"))
            subprocess.run(
                [cli, "-h", url.host, "-p", str(url.port or 6379), "DEL", self.stream, f"{self.stream}:dead"],
                capture_output=True,
            )
        if self.logs:
            shutil.rmtree(self.logs, ignore_errors=True)


class Proxy:
    """An HTTP proxy on loopback in front of the api. ``fault(n, method,
    path)`` decides, for the n-th request (from 1), what to do to it:

    - ``None``: forward it and relay the answer;
    - ``("lose", status)``: forward it, let the api store it, then drop the
      real answer and say ``status`` (with ``Retry-After: 0``) instead;
    - ``("refuse", status, retry_after)``: answer ``status`` without
      forwarding;
    - ``("answer", status, body, headers)``: answer that without
      forwarding (a stand-in for a route the api does not have yet).

    ``seen`` keeps each request as ``(method, path, body)``.
    """

    def __init__(self, target: str, fault: Callable[[int, str, str], Optional[tuple]]) -> None:
        self.target = target
        self.fault = fault
        self.requests = 0
        self.lost = 0
        self.refused = 0
        self.seen: List[tuple] = []
        self._lock = threading.Lock()
        self._upstream = httpx.Client(base_url=target, timeout=30)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests += 1
                    n = proxy.requests
                    proxy.seen.append((self.command, self.path, json.loads(body) if body else None))
                action = proxy.fault(n, self.command, self.path)
                if action and action[0] == "answer":
                    content = json.dumps(action[2]).encode() if action[2] is not None else b""
                    return self._reply(action[1], content, dict(action[3]))
                if action and action[0] == "refuse":
                    with proxy._lock:
                        proxy.refused += 1
                    return self._reply(action[1], b'{"error":"injected"}', {"retry-after": str(action[2])})
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = proxy._upstream.request(self.command, self.path, content=body, headers=headers)
                if action and action[0] == "lose" and answer.status_code < 300:
                    with proxy._lock:
                        proxy.lost += 1
                    return self._reply(action[1], b'{"error":"answer lost by the test proxy"}', {"retry-after": "0"})
                keep = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after")}
                self._reply(answer.status_code, answer.content, keep)

            def _reply(self, status: int, body: bytes, headers: Dict[str, str]) -> None:
                self.send_response(status)
                headers.setdefault("content-type", "application/json")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """The url of a server on loopback that accepts connections and never
    answers: a client's sender is stuck on it."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        yield f"http://127.0.0.1:{silent.getsockname()[1]}"
    finally:
        silent.close()


def every_fourth_answer_lost(n: int, method: str, path: str) -> Optional[tuple]:
    """The done-when fault: every fourth request loses its answer after the
    api stored it, and the client is told 503."""
    return ("lose", 503) if n % 4 == 0 else None


def wait_for_total(
    read_usage: Callable[[], Any], expected: int, timeout: float = 60, falling: bool = False
) -> Dict[str, Any]:
    """Polls the usage until the pipeline has counted ``expected`` tokens;
    fails at once if it counts more (a double count; unless the total is
    ``falling``, after a void), and checks once more after the usage cache
    has turned over, so that a late duplicate shows too."""
    deadline = time.monotonic() + timeout
    usage: Any = None
    while time.monotonic() < deadline:
        try:
            usage = read_usage()
        except Exception as err:  # a tenant not counted yet is a 404
            if getattr(err, "status", None) != 404:
                raise
            usage = None
        if usage is not None:
            assert falling or usage["totalTokens"] <= expected, f"counted {usage['totalTokens']} > recorded {expected}"
            if usage["totalTokens"] == expected:
                time.sleep(1.5)  # the pipeline reads every 200 ms; the usage cache lives 50 ms
                usage = read_usage()
                assert usage["totalTokens"] == expected, f"counted {usage['totalTokens']} != recorded {expected}"
                return usage
        time.sleep(0.2)
    raise AssertionError(f"counted {usage and usage['totalTokens']} != recorded {expected} after {timeout}s")


def tenant_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def reservations_available(url: str, key: str) -> bool:
    """Whether the api has the reservation routes: an api without them
    answers any path under /api/reservations with 404 "not found"."""
    response = httpx.delete(
        f"{url}/api/reservations/probe-{secrets.token_hex(4)}", headers={"authorization": f"Bearer {key}"}
    )
    try:
        error = json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        error = None
    return not (response.status_code == 404 and error == "not found")
