"""A webhook receiver, as docs/HOOKS.md's worked example: checks each
signature, drops stale events by epoch, prints one JSON line per accepted
event. Usage: receiver.py PORT SECRET"""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from verify import verify

SECRET = sys.argv[2].encode()
latest_epoch = {}  # (uid, role) -> the newest epoch seen


class Hooks(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not verify(SECRET, self.headers.get("Signalgate-Signature", ""), body):
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)
        key = (event["uid"], event["role"])
        if event["epoch"] > latest_epoch.get(key, 0):
            latest_epoch[key] = event["epoch"]
            print(json.dumps(event), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Hooks).serve_forever()
