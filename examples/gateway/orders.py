"""An existing HTTP service to put behind the session-crypto gateway: a tiny orders API
in plain Python (no dependencies), listening on loopback only.

    python3 examples/gateway/orders.py [PORT=8080]

It trusts the gateway's identity headers — X-Session-Client-Id names the caller, and
each client sees only its own orders — because only the gateway can reach it.

    GET    /orders           the caller's orders
    POST   /orders           create one from a JSON body {"item": ..., "qty": ...} -> 201
    GET    /orders/<id>      one order, or 404
    DELETE /orders/<id>      -> 204
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDERS = {}  # id -> order


class Orders(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, value=None):
        body = b"" if value is None else json.dumps(value).encode()
        self.send_response(status)
        if value is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def caller(self):
        return self.headers.get("X-Session-Client-Id", "")

    def mine(self, order_id):
        order = ORDERS.get(order_id)
        return order if order and order["owner"] == self.caller() else None

    def do_GET(self):
        if self.path == "/orders":
            self.reply(200, [o for o in ORDERS.values() if o["owner"] == self.caller()])
        elif self.path.startswith("/orders/") and self.mine(self.path[8:]):
            self.reply(200, self.mine(self.path[8:]))
        else:
            self.reply(404, {"error": "no such order"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            wanted = json.loads(self.rfile.read(length) or b"null")
            item, qty = str(wanted["item"]), int(wanted.get("qty", 1))
        except (ValueError, TypeError, KeyError):
            return self.reply(400, {"error": "expected {\"item\": ..., \"qty\": ...}"})
        if self.path != "/orders":
            return self.reply(404, {"error": "no such route"})
        order_id = str(len(ORDERS) + 1)
        ORDERS[order_id] = {"id": order_id, "item": item, "qty": qty, "owner": self.caller()}
        self.reply(201, ORDERS[order_id])

    def do_DELETE(self):
        if self.path.startswith("/orders/") and self.mine(self.path[8:]):
            del ORDERS[self.path[8:]]
            self.reply(204)
        else:
            self.reply(404, {"error": "no such order"})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    server = ThreadingHTTPServer(("127.0.0.1", port), Orders)
    print(f"orders service on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
