"""A toy HTTP service started through ``driftloop.io.services`` as the CLI starts its services.

``SERVICE`` can wait before it binds (a slow boot) and logs one line per launch, so a test counts launches;
``Foreign`` is a server in the test's own process (not one a spec launches) holding a port.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import sys
import threading
import time
from pathlib import Path

from driftloop.io import services

# argv: port, seconds to wait before binding. Prints its pid first, so the log counts launches.
SERVICE = """
import http.server, os, sys, time

print(f"launched {os.getpid()}", flush=True)
time.sleep(float(sys.argv[2]))

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""

# argv: run dir, spec as JSON. Starts the service like the CLI does and prints the status as JSON.
START = """
import dataclasses, json, sys
from pathlib import Path
from driftloop.io import services

fields = json.loads(sys.argv[2])
spec = services.ServiceSpec(**{**fields, "argv": tuple(fields["argv"]), "run_dir": Path(sys.argv[1])})
(status,) = services.start_all([spec], timeout=20)
print(json.dumps(dataclasses.asdict(status)), flush=True)
"""


def make_spec(tmp_path: Path, port: int, boot_seconds: float) -> services.ServiceSpec:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    return services.ServiceSpec(
        name="toy",
        argv=(sys.executable, str(script), str(port), str(boot_seconds)),
        health_url=f"http://127.0.0.1:{port}/health",
        listen_url=f"http://127.0.0.1:{port}",
        env={},
        run_dir=tmp_path / "run",
    )


def launches(spec: services.ServiceSpec) -> list[int]:
    """The pid of every process launched for ``spec`` (each logs one line as it starts)."""
    if not spec.log_path.exists():
        return []
    return [int(line.split()[1]) for line in spec.log_path.read_text().splitlines() if line.startswith("launched ")]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"  # an orphan nobody reaped yet


def stop_launched(specs: list[services.ServiceSpec]) -> None:
    """Stop each spec's service (by its pid file), and any process launched for it that still runs."""
    for spec in specs:
        services.stop(spec, grace=2.0)
        for pid in launches(spec):
            if not gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, 9)


class Foreign:
    """An HTTP server in this process (so not one the spec launches) whose /health fails until ``ready_after``."""

    def __init__(self, port: int, ready_after: float) -> None:
        ready_at = time.monotonic() + ready_after

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200 if time.monotonic() >= ready_at else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
