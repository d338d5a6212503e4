"""A non-Rust upstream for the gateway tests (Python's http.server).

Answers every method with JSON describing what it received -- method, path and
query, headers, body (base64) -- with the status taken from a `/status/<code>`
path (default 200), after a pause from a `/slow/<ms>` path. Prints `listening <port>` once bound to a free loopback port.
"""

import base64
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = self.path.split("?")[0].strip("/").split("/")
        status = int(parts[1]) if len(parts) == 2 and parts[0] == "status" else 200
        if len(parts) == 2 and parts[0] == "slow":
            time.sleep(int(parts[1]) / 1000)
        out = json.dumps(
            {
                "server": "python",
                "method": self.command,
                "target": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": base64.b64encode(body).decode(),
            },
            sort_keys=True,
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    print(f"listening {server.server_address[1]}", flush=True)
    sys.stdout.flush()
    server.serve_forever()
