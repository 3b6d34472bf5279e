"""`nmt serve` under sustained overload: the short version of scripts/serve_overload.py (its
10-minute run on the Multi30k model is in docs/serving.md). A real server on a loopback port,
twice the load it can serve, two decoding workers killed with SIGKILL, clients that go away in
the middle of their requests, SIGTERM with requests in flight."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_twice_the_load_it_can_serve_with_workers_killed_is_200_or_503_and_all_answered(trained, tmp_path):
    out = tmp_path / "overload.json"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "serve_overload.py"), "-m", str(trained[0])]
    options = ["--minutes", "0.5", "--capacity-seconds", "8", "--disconnect-every", "2", "--max-queue", "256"]
    result = subprocess.run([*command, *options, "--pool", "50", "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    assert figures["failed"] == []
    assert set(figures["statuses"]) == {"200", "503"}  # overloaded, and nothing else went wrong
    assert figures["answered_503"] > 0 and figures["accepted"] > 0
    assert figures["sent_sentences_per_s"] > 1.5 * figures["rate_sentences_per_s"]
    assert len(figures["kills"]) == 2 and figures["restart_lines"] == 2
    assert figures["went_away"] >= 10 and figures["exit_code"] == 0
    outcomes = figures["outcomes"]
    assert all(o["correct"] for o in outcomes if o["status"] == 200)
    assert all(o["retry_after"] for o in outcomes if o["status"] == 503)
    # every request sent before SIGTERM, the last ones too, got its answer
    last = max(o["sent"] for o in outcomes if o["kind"] == "load")
    assert all(o["status"] in (200, 503) for o in outcomes if o["kind"] == "load" and o["sent"] > last - 1)
    assert figures["memory_mb"]["peak_second_half"] < 1.2 * figures["memory_mb"]["first"]
