"""A tenant's webhook receiver for the tests, verifying every delivery with
the real `standardwebhooks` package, as an integrator's would.

Listens on 127.0.0.1 (a free port, printed on the first line of stdout):
  POST /hooks/...   a delivery: 204 if it verifies with a trusted secret,
                    401 if it does not (missing headers, bad or stale
                    signature); either way it is recorded
  PUT  /trust       the secrets to trust from now on (a JSON list)
  GET  /received    every delivery so far: webhook-id, status answered,
                    the index of the trusted secret that verified it, body
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

lock = threading.Lock()
trusted = []
received = []


class Receiver(BaseHTTPRequestHandler):
    def body(self):
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def answer(self, status, payload=None):
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        if payload is not None:
            self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        if not self.path.startswith("/hooks/"):
            return self.answer(404)
        body = self.body()
        headers = {k: v for k, v in self.headers.items()}
        with lock:
            secrets = list(trusted)
        verified_by = None
        for index, secret in enumerate(secrets):
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified_by = index
            break
        status = 401 if verified_by is None else 204
        with lock:
            received.append(
                {
                    "webhookId": headers.get("webhook-id"),
                    "status": status,
                    "verifiedBy": verified_by,
                    "body": body.decode(),
                }
            )
        self.answer(status)

    def do_PUT(self):
        if self.path != "/trust":
            return self.answer(404)
        secrets = json.loads(self.body())
        with lock:
            trusted[:] = secrets
        self.answer(204)

    def do_GET(self):
        if self.path != "/received":
            return self.answer(404)
        with lock:
            self.answer(200, list(received))

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(server.server_address[1], flush=True)
server.serve_forever()
