"""The Ray dashboard as the README says to open it: at the address `serve run` prints, with the token
`ray get-auth-token` prints (Ray's token authentication is on for a new local cluster), its Serve
API lists the application's deployments and their replicas; without the token it refuses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import Server

pytestmark = pytest.mark.e2e


def _dashboard_url(server: Server) -> str:
    log = re.sub(r"\x1b\[[0-9;]*m", "", server.log.read_text())  # Ray colours the address
    match = re.search(r"View the dashboard at (http://[\w.:]+)", log)
    assert match, "serve run printed no dashboard address"
    return match.group(1)


def test_the_dashboard_shows_the_deployments_with_the_documented_token(server: Server) -> None:
    url = f"{_dashboard_url(server)}/api/serve/applications/"
    refused = requests.get(url, timeout=30)
    assert refused.status_code == 401 and "Missing authentication token" in refused.text
    ray = Path(sys.executable).parent / "ray"
    token = subprocess.run([str(ray), "get-auth-token"], capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    deployments = answer.json()["applications"]["stt"]["deployments"]
    assert set(deployments) == {"Ingress", "WhisperEngine"}
    assert len(deployments["Ingress"]["replicas"]) == 2 and deployments["WhisperEngine"]["status"] == "HEALTHY"
