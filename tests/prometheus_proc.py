"""A real Prometheus server (Debian's build, `make prometheus`) scraping local targets."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from components.serve.infra import free_port

BINARY = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "prometheus"


def prometheus_binary() -> str | None:
    return str(BINARY) if BINARY.exists() else shutil.which("prometheus")


class PrometheusProcess:
    def __init__(self, targets: list[str], scrape_interval: str = "500ms"):
        self.dir = tempfile.TemporaryDirectory()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = Path(self.dir.name) / "prometheus.yml"
        config.write_text(
            f"global: {{scrape_interval: {scrape_interval}, evaluation_interval: {scrape_interval}}}\n"
            "scrape_configs:\n  - job_name: conveyor\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.log = open(Path(self.dir.name) / "log.txt", "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [prometheus_binary(), f"--config.file={config}", f"--storage.tsdb.path={self.dir.name}/data",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)
        # Ready, and every target scraped once: Prometheus hands discovered targets to the scraper
        # at most every 5 s, so the first scrape comes a few seconds after start.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                query = urllib.parse.urlencode({"query": "sum(up)"})
                with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=1) as resp:
                    result = json.loads(resp.read())["data"]["result"]
                    if result and float(result[0]["value"][1]) >= len(targets):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("prometheus did not scrape its targets within 30 s")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        self.dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
