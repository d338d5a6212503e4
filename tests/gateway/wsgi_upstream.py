"""A WSGI upstream on Python's wsgiref, for the gateway tests.

WSGI (like CGI) hands an application its headers as `HTTP_<NAME>` variables, with
`-` and `_` both written `_`: `X-Session-Id` and `X_Session_Id` are the same
`HTTP_X_SESSION_ID`. Answers every request with the JSON of its `HTTP_*` variables
and `CONTENT_TYPE`. Prints `listening <port>` once bound to a free loopback port.
"""

import json
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server


def app(environ, start_response):
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    seen["CONTENT_TYPE"] = environ.get("CONTENT_TYPE", "")
    body = json.dumps(seen, sort_keys=True).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
    )
    return [body]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
print(f"listening {server.server_port}", flush=True)
sys.stdout.close()
server.serve_forever()
