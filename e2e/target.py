"""A website for the browser tests to monitor: answers every path with the
current status code (200 at start); GET /set/<code> changes it."""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

status = 200


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        global status
        if self.path.startswith("/set/"):
            status = int(self.path[len("/set/"):])
            code = 200
        else:
            code = status
        body = f"status {code}\n".encode()
        self.send_response(code)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the checker took the status and closed the connection

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
