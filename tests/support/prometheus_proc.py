"""A real Prometheus server (Debian's build, `make prometheus`) scraping local targets."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from components.stages.serve.infra import free_port
from tests.support.paths import ROOT

BINARY = ROOT / ".venv" / "bin" / "prometheus"


def binary(name: str) -> str | None:
    """A daemon `make prometheus` unpacked into the venv, else one on PATH, else None."""
    path = BINARY.parent / name
    return str(path) if path.exists() else shutil.which(name)


def prometheus_binary() -> str | None:
    return binary("prometheus")


def _wait_ready(url: str, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} at {url} not ready within {timeout:g} s")


class ServiceProcess:
    """A Debian-packaged Prometheus-family daemon (`make prometheus`) on a free loopback port.
    `args` may name {dir} (a private temporary folder) and {port}; `files` are written into {dir}
    before it starts."""

    def __init__(self, binary: str, args: list[str], what: str, files: dict[str, str] | None = None):
        self.dir = tempfile.TemporaryDirectory()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for name, text in (files or {}).items():
            (Path(self.dir.name) / name).write_text(text)
        self.log = open(Path(self.dir.name) / "log.txt", "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen([binary, *[a.format(dir=self.dir.name, port=self.port) for a in args]],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(self.url, what)
        except RuntimeError as exc:
            self.fail(str(exc))

    def fail(self, why: str):
        self.log.flush()
        tail = (Path(self.dir.name) / "log.txt").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"{why}; its log ends:\n{tail}") from None

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


def pushgateway() -> ServiceProcess:
    return ServiceProcess(binary("prometheus-pushgateway"), ["--web.listen-address=127.0.0.1:{port}"], "pushgateway")


def alertmanager(config_file: str) -> ServiceProcess:
    return ServiceProcess(binary("prometheus-alertmanager"), [
        f"--config.file={config_file}", "--storage.path={dir}/data", "--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address="], "alertmanager")  # no gossip: a single instance on loopback


class PrometheusProcess(ServiceProcess):
    def __init__(self, targets: list[str], scrape_interval: str = "500ms", rule_files: list[str] = (),
                 alertmanager_url: str | None = None):
        """Scrapes `targets` (honouring their labels, as a Pushgateway scrape must), evaluates
        `rule_files` and sends alerts to `alertmanager_url`."""
        text = (f"global: {{scrape_interval: {scrape_interval}, evaluation_interval: {scrape_interval}}}\n"
                "scrape_configs:\n  - job_name: conveyor\n    honor_labels: true\n    static_configs:\n"
                f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        if rule_files:
            text += f"rule_files: [{', '.join(repr(str(f)) for f in rule_files)}]\n"
        if alertmanager_url:
            text += ("alerting:\n  alertmanagers:\n    - static_configs:\n"
                     f"        - targets: [{alertmanager_url.split('://', 1)[1]!r}]\n")
        super().__init__(prometheus_binary(), ["--config.file={dir}/prometheus.yml", "--storage.tsdb.path={dir}/data",
                                               "--web.listen-address=127.0.0.1:{port}"], "prometheus",
                         files={"prometheus.yml": text})
        # Every target scraped once: Prometheus hands discovered targets to the scraper at most
        # every 5 s, so the first scrape comes a few seconds after start.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                result = self.query("sum(up)")
                if result and float(result[0]["value"][1]) >= len(targets):
                    return
            time.sleep(0.2)
        self.fail("prometheus did not scrape its targets within 30 s")

    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector (raises on a query Prometheus rejects)."""
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}",
                                    timeout=10) as resp:
            answer = json.loads(resp.read())
        if answer["status"] != "success":
            raise ValueError(f"{expr}: {answer}")
        return answer["data"]["result"]
