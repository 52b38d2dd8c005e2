"""Secrets never shown (issue 17, part 6), per output a user reads: the console, `--output json`,
the dashboard (`/api/logs`, `/api/events`) and `devloop status` (text and JSON).

The project's chart takes its secrets the documented ways: a values file named secrets.yaml
(one entry under `secrets:`, one that only the file's name says is secret), `chart.set` from
the environment (OPENAI_KEY), a URL with a password in the chart's own values, and a value
that exists only in the Secret object the chart renders; the pod also prints a URL with a
password devloop was never told about. Its pod prints them all, plus a
URL-encoded form and `TOKENIZERS_PARALLELISM=false`, then exits: a crash loop, so the line is
also in the rollout's log tail and in `status`. Real devloop processes, stand-in cluster.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import busybox_context, devloop_env
from tests.kube_standin.fixtures import wait_for
from tests.watchproc import Watch

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
NS = "secrets"
API_KEY = "vf:api/key+9f3k"  # from secrets.yaml, under `secrets:`
WEBHOOK = "hooks-path-from-secrets-file"  # from secrets.yaml: its name makes it secret
OPENAI = "sk-openai-from-env-1234"  # chart.set: {openaiKey: ${OPENAI_KEY}}
DB_PASSWORD = "db-pa55word-77"  # inside a URL in the chart's values.yaml
RENDERED = "rendered-only-secret-42"  # only in the rendered Secret object's data
CACHE_PASSWORD = "hunter2hunter"  # in a URL devloop was never told about
LINE = ("api=$API_KEY hook=$WEBHOOK openai=$OPENAI db=$DB_URL rendered=$RENDERED"
        f" enc={urllib.parse.quote(API_KEY, safe='')} cache=redis://:{CACHE_PASSWORD}@cache:6379/0"
        " TOKENIZERS_PARALLELISM=false")
SECRETS = (API_KEY, WEBHOOK, OPENAI, DB_PASSWORD, RENDERED, CACHE_PASSWORD,
           urllib.parse.quote(API_KEY, safe=""))

CHART = {
    "Chart.yaml": "apiVersion: v2\nname: box\nversion: 0.1.0\n",
    "values.yaml": ('secrets: {apiKey: ""}\nwebhookPath: ""\nopenaiKey: ""\n'
                    f'dbUrl: "postgres://app:{DB_PASSWORD}@db:5432/app"\n'),
    "templates/secret.yaml": (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: box-secret}\n"
        "stringData:\n  API_KEY: {{ .Values.secrets.apiKey | quote }}\n"
        "  WEBHOOK: {{ .Values.webhookPath | quote }}\n  OPENAI: {{ .Values.openaiKey | quote }}\n"
        "  DB_URL: {{ .Values.dbUrl | quote }}\n"
        f"data:\n  RENDERED: {base64.b64encode(RENDERED.encode()).decode()}\n"),
    "templates/deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: box}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: box}}}}
  template:
    metadata: {{labels: {{app: box}}}}
    spec:
      containers:
        - name: box
          image: placeholder:none
          envFrom: [{{secretRef: {{name: box-secret}}}}]
          command: ["/bin/sh", "-c", {json.dumps(f'echo "{LINE}"; exit 1')}]
""",
}


def make_project(root: Path, image_prefix: str) -> Path:
    busybox_context(root / "services/box", {"src/index.html": "v1\n"})
    for name, text in CHART.items():
        (root / "chart" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "chart" / name).write_text(text)
    (root / "secrets.yaml").write_text(
        f"secrets: {{apiKey: {json.dumps(API_KEY)}}}\nwebhookPath: {WEBHOOK}\n")
    (root / "devloop.yaml").write_text(
        f"version: 1\nnamespace: {NS}\nrollout_timeout_s: 60\n"
        "chart: {path: chart, release: box, values_files: [secrets.yaml],"
        " set: {openaiKey: '${OPENAI_KEY}'}}\n"
        f"services:\n  box:\n    context: services/box\n    image: {image_prefix}-box\n"
        "    live_update: false\n")
    return root


ENV = {"DEVLOOP_HELM": str(REPO / ".tools/bin/helm"), "OPENAI_KEY": OPENAI,
       "TOKENIZERS_PARALLELISM": "false"}


def devloop(root: Path, kubeconfig: Path, *args: str) -> str:
    env = devloop_env(KUBECONFIG=str(kubeconfig), XDG_CACHE_HOME=str(root.parent / "cache"),
                      HOME=str(root.parent), **ENV)
    done = subprocess.run([sys.executable, "-m", "devloop.cli", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr


def assert_masked(output: str, where: str) -> None:
    leaked = [s for s in SECRETS if s in output]
    assert not leaked, f"{where} shows {leaked}:\n{output[-3000:]}"
    # positive control: the pod's line is there, masked, and "false" is still readable
    masked = ("api=*** hook=*** openai=*** db=*** rendered=*** enc=***"
              " cache=redis://:***@cache:6379/0 TOKENIZERS_PARALLELISM=false")
    assert masked in output, f"{where}: the pod's line is missing:\n{output[-3000:]}"


def test_no_output_shows_a_secret(standin, tmp_path, image_prefix):
    root = make_project(tmp_path / "repo", image_prefix)
    assert_masked(devloop(root, standin.kubeconfig, "sync", "-o", "json"), "sync -o json")
    assert_masked(devloop(root, standin.kubeconfig, "sync"), "sync (console)")
    for args in (("status", "-o", "json"), ("status",)):
        last: list[str] = [""]

        def with_tail(args: tuple[str, ...] = args, last: list[str] = last) -> str | None:
            """The log tail is shown while the pod is crashing, not in the moment it runs."""
            last[0] = devloop(root, standin.kubeconfig, *args)
            return last[0] if "api=" in last[0] else None

        try:
            shown = wait_for(with_tail, 60, what=f"the log tail in {args}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last output:\n{last[0][-3000:]}") from None
        assert_masked(shown, " ".join(args))

    watch = Watch(root, standin.kubeconfig, extra_env=ENV)
    try:
        ready = watch.wait("dashboard.ready", timeout=60)
        url, token = ready["url"], ready.get("open", "").partition("?token=")[2]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        if token:  # reads need it, as the page's do
            opener.addheaders = [("X-Devloop-Token", token)]
        stream = opener.open(url + "/api/events", timeout=60)
        seen: list[str] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("api=" in s for s in seen):
            line = stream.readline().decode()
            if line.startswith("data: "):
                seen.append(line[6:])
        stream.close()
        assert_masked("\n".join(seen), "dashboard /api/events")

        def logged() -> str | None:
            with opener.open(url + "/api/logs?service=box", timeout=30) as resp:
                text = resp.read().decode()
            return text if "api=" in text else None

        assert_masked(wait_for(logged, 60, what="the line in /api/logs"), "dashboard /api/logs")
        with opener.open(url + "/api/status", timeout=30) as resp:
            status = resp.read().decode()
        assert not [s for s in SECRETS if s in status], status
    finally:
        watch.stop()
    assert_masked("\n".join(json.dumps(e) for e in watch.events), "watch -o json")
