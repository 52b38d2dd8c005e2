"""`python -m tests.kube_standin`: what a user trying devloop by hand runs."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import yaml
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]


def test_cli_prints_one_kubeconfig_line_serves_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kube_standin", "--state-dir", str(tmp_path), "--no-pods"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert Path(line) == tmp_path / "kubeconfig"
        kubeconfig = yaml.safe_load(Path(line).read_text())
        assert kubeconfig["current-context"] == "devloop-standin"
        api = config.new_client_from_config(line, context="devloop-standin",
                                            persist_config=False)
        names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
        assert "default" in names
        api.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out == ""  # exactly one line was printed
    assert "stand-in stopped" in (tmp_path / "standin.log").read_text()
