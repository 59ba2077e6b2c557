"""Runs the runnable examples of Markdown documents against a live stack,
in the order written, and fails when an answer drifts from what the
document says. Run by scripts/test-examples.

A runnable example is a ```sh block right after an HTML comment that
says what its curl calls answer, one line per call, in order:

    <!-- example
    202 success=true eventId
    200 tenant="acme-corp" byFeature[feature=gpt-4o].cost="0.0375"
    -->

Each line is the status, then checks on the JSON body: `path` (present)
or `path=value` (equal; the value is JSON, else a string). A path is
dotted; `name[key=value]` picks the item of the list `name` whose `key`
is `value`; a number picks by index. `<!-- example eventually -->` retries
the block for up to 60 s until every check holds (a read of what the
pipeline has not counted yet). A block may leave its calls unstated
(`<!-- example -->`): it must then only succeed. Other blocks are prose.

Each document gets a stack of its own (the api and pipeline of
clients/python/tests/support.py: free loopback ports, a throwaway database
and stream), so its examples run from an empty system. A block runs in
bash with `set -eo pipefail`, `$BASE` and `$KEY` set to that stack's
address and admin key and `DATABASE_URL` to its database. Nothing leaves
this machine: the example hosts of the webhook URLs are rewritten to
receivers on loopback, which the stack's allow-list names (and back again
in the answers), and a block that still names another host is refused
before it runs.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "clients" / "python" / "tests"))

from support import Stack  # noqa: E402

# The hosts the documents' webhook examples name; each becomes a receiver on loopback.
EXAMPLE_HOSTS = ("https://hooks.slack.com", "https://billing.example.com")
EVENTUALLY_SECS = 60
# One check of an annotation: words, "quoted strings" and [selectors], unbroken by spaces outside them.
CHECK = re.compile(r'(?:"[^"]*"|\[[^\]]*\]|[^\s"\[])+')

# Records each curl call of a block (status and body, in order) and passes
# the body on to the block as curl would.
PRELUDE = r"""
set -eo pipefail
curl() {
  local call
  call="$CALLS/$(printf '%03d' "$(find "$CALLS" -name '*.status' | wc -l)")"
  command curl -w '%{http_code}' -o "$call.body" "$@" >"$call.status"
  cat "$call.body"
}
"""


@dataclass
class Expected:
    status: int
    checks: List[str]


@dataclass
class Example:
    doc: str
    line: int
    code: str
    eventually: bool
    calls: Optional[List[Expected]]


@dataclass
class Receiver:
    """The webhooks' destination: answers every POST 200 "ok", as Slack does."""

    received: List[Tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.received.append((self.path, body))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.address}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def examples(doc: Path) -> List[Example]:
    lines = doc.read_text().splitlines()
    found = []
    for i, text in enumerate(lines):
        head = re.fullmatch(r"<!-- example( eventually)?( -->)?", text.strip())
        if not head:
            continue
        end = i if head.group(2) else next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "-->")
        stated = [CHECK.findall(line) for line in lines[i + 1 : end] if line.strip()]
        fence = end + 1
        if fence >= len(lines) or lines[fence].strip() != "```sh":
            raise SystemExit(f"{doc}:{i + 1}: an example annotation must sit right above a ```sh block")
        close = next(j for j in range(fence + 1, len(lines)) if lines[j].strip() == "```")
        found.append(
            Example(
                doc=str(doc.relative_to(REPO)),
                line=fence + 1,
                code="\n".join(lines[fence + 1 : close]),
                eventually=bool(head.group(1)),
                calls=[Expected(int(words[0]), words[1:]) for words in stated] if head.group(2) is None else None,
            )
        )
    return found


def pick(value: Any, path: str) -> Any:
    """The part of `value` at `path`; KeyError when there is none."""
    for part in re.findall(r"[^.\[\]]+|\[[^\]]*\]", path):
        if part.startswith("["):
            key, _, wanted = part[1:-1].partition("=")
            matches = [item for item in value if str(item.get(key)) == wanted]
            if not matches:
                raise KeyError(part)
            value = matches[0]
        elif isinstance(value, list):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(part)
    return value


def check(expected: Expected, status: int, body: bytes) -> List[str]:
    problems = []
    if status != expected.status:
        problems.append(f"status {status}, the document says {expected.status}")
    try:
        answer = json.loads(body) if body else None
    except ValueError:
        answer = None
    for item in expected.checks:
        # The first `=` outside brackets ends the path.
        path, eq, wanted = re.fullmatch(r"((?:[^=\[]|\[[^\]]*\])+)(=?)(.*)", item).groups()
        try:
            got = pick(answer, path)
        except (KeyError, IndexError, TypeError, ValueError):
            problems.append(f"no `{path}` in the answer")
            continue
        if eq:
            try:
                want = json.loads(wanted)
            except ValueError:
                want = wanted
            if got != want:
                problems.append(f"`{path}` is {json.dumps(got)}, the document says {wanted}")
    return problems


def run(example: Example, env: Dict[str, str], code: str, receivers: Dict[str, Receiver]) -> List[str]:
    """Runs the block once; the problems found (none when it holds). The
    answers are read with each receiver's address put back to the example
    host it stands for, as the document shows them."""
    with tempfile.TemporaryDirectory() as calls:
        shell = subprocess.run(
            ["bash", "-c", PRELUDE + code],
            env={**env, "CALLS": calls},
            cwd=calls,
            capture_output=True,
            timeout=120,
        )
        made = sorted(Path(calls).glob("*.status"))
        answers = [(int(path.read_text() or 0), path.with_suffix(".body").read_bytes()) for path in made]
    for host, receiver in receivers.items():
        answers = [(status, body.replace(receiver.url.encode(), host.encode())) for status, body in answers]
    problems = []
    if shell.returncode != 0:
        problems.append(f"exit status {shell.returncode}; stderr: {shell.stderr.decode(errors='replace')[-2000:]}")
    if example.calls is not None:
        if len(answers) != len(example.calls):
            problems.append(f"{len(answers)} curl calls, the annotation states {len(example.calls)}")
        for n, (expected, (status, body)) in enumerate(zip(example.calls, answers), 1):
            problems += [
                f"call {n}: {p} (body: {body.decode(errors='replace')[:600]})" for p in check(expected, status, body)
            ]
    return problems


def local(code: str, receivers: Dict[str, Receiver], bin_dir: str) -> str:
    for host, receiver in receivers.items():
        code = code.replace(host, receiver.url)
    code = code.replace("target/release/", f"{bin_dir}/")
    for url in re.findall(r"https?://([^/\s\"']+)", code):
        if not url.startswith(("127.0.0.1", "localhost", "$BASE")):
            raise SystemExit(f"the example names {url}, beyond this machine")
    return code


def run_document(doc: Path, bin_dir: str) -> int:
    found = examples(doc)
    receivers = {host: Receiver() for host in EXAMPLE_HOSTS}
    print(f"==> {doc.relative_to(REPO)}: {len(found)} examples", file=sys.stderr)
    stack = Stack.start(
        {
            "FLAGMETER_WEBHOOK_ALLOWED_HOSTS": ",".join(r.address for r in receivers.values()),
            "FLAGMETER_WEBHOOK_ALLOW_INSECURE": "true",
            "FLAGMETER_ALERT_POLL_MS": "200",
        }
    )
    failures = 0
    try:
        env = {
            **os.environ,
            "BASE": stack.url,
            "KEY": stack.key,
            "DATABASE_URL": stack.database_url or "",
            # `python3` in a block is this venv's, which has what the examples import.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        for example in found:
            code = local(example.code, receivers, bin_dir)
            deadline = time.monotonic() + (EVENTUALLY_SECS if example.eventually else 0)
            while True:
                problems = run(example, env, code, receivers)
                if not problems or time.monotonic() >= deadline:
                    break
                time.sleep(0.5)
            where = f"{example.doc}:{example.line}"
            if problems:
                failures += 1
                print(f"FAIL {where}\n{example.code}\n  " + "\n  ".join(problems), file=sys.stderr)
            else:
                print(f"ok   {where}", file=sys.stderr)
    finally:
        if failures:
            print(stack.log_tail(), file=sys.stderr)
        stack.stop()
        for receiver in receivers.values():
            receiver.server.shutdown()
    return failures


def main() -> None:
    bin_dir = os.environ.get("FLAGMETER_BIN_DIR", str(REPO / "target" / "debug"))
    failures = sum(run_document(REPO / doc, bin_dir) for doc in sys.argv[1:])
    if failures:
        raise SystemExit(f"{failures} examples drifted from what their documents say")
    print("==> every example answers as its document says", file=sys.stderr)


if __name__ == "__main__":
    main()
