"""deploy/ wires Prometheus and the OpenTelemetry collector to the workers: what each side
expects of the other is checked here, and `docker-compose config` validates the compose file
when docker-compose is installed (.ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.servers import PROJECT

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
DEPLOY = PROJECT / "deploy"


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_every_worker_shares_a_fresh_metrics_folder_and_sends_traces_to_the_collector():
    compose = load("docker-compose.yml")
    app = compose["services"]["app"]
    folder = app["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    # A tmpfs: empty at every container start, as prometheus_client's multiprocess mode needs,
    # and writable by the image's user (uid 10001, deploy/Dockerfile).
    assert any(mount.split(":")[0] == folder and "uid=10001" in mount for mount in app["tmpfs"])
    assert app["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith("http://otel-collector:4318}")
    assert "METRICS_TOKEN" in app["environment"]
    collector = load("otel-collector.yaml")
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "0.0.0.0:4318"
    assert "otlp" in collector["service"]["pipelines"]["traces"]["receivers"]
    assert "4318" in compose["services"]["otel-collector"]["expose"]


def test_prometheus_scrapes_each_worker_with_the_token_it_writes():
    compose = load("docker-compose.yml")
    prometheus = compose["services"]["prometheus"]
    config = load("prometheus.yml")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "dreamytin"]
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"][0]["names"] == ["app"] and job["dns_sd_configs"][0]["port"] == 8000
    token_file = job["authorization"]["credentials_file"]
    assert f'"$$METRICS_TOKEN" > {token_file}' in prometheus["command"][0]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]


def test_nginx_keeps_metrics_from_the_outside():
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert "location = /metrics {\n        return 404;" in nginx


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_the_file(tmp_path: Path):
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    example = (copy / ".env.example").read_text()
    (copy / ".env").write_text(
        example.replace("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD=abc123\n").replace(
            "METRICS_TOKEN=\n", f"METRICS_TOKEN={'m' * 40}\n"
        )
    )
    result = subprocess.run(
        ["docker-compose", "-f", str(copy / "docker-compose.yml"), "config"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) >= {"app", "prometheus", "otel-collector", "nginx"}
    assert resolved["services"]["app"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
