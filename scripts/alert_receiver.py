"""A runnable example receiver for driftloop's alerts: prints every POSTed alert (and appends it to a file).

    python scripts/alert_receiver.py --port 9911 [--out alerts.jsonl]
    DRIFTLOOP_ALERT_WEBHOOK_URL=http://127.0.0.1:9911/alerts driftloop up

In production point the webhook at Slack, PagerDuty or your own service instead.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    """Serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9911)
    parser.add_argument("--out", type=Path, default=None, help="also append each alert as a JSON line here")
    args = parser.parse_args()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                alert = json.loads(body)
            except ValueError:
                alert = {"raw": body.decode(errors="replace")}
            print(f"ALERT {alert.get('subject', '')}\n{alert.get('body', alert)}\n", flush=True)
            if args.out:
                with args.out.open("a") as handle:
                    handle.write(json.dumps(alert) + "\n")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    print(f"listening on http://{args.host}:{args.port}/alerts", flush=True)
    ThreadingHTTPServer((args.host, args.port), Receiver).serve_forever()


if __name__ == "__main__":
    main()
