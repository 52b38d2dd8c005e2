"""devloop.yaml saved in two writes (editors that truncate, then write, and `open(..., "w")`) is
read once its writes settle, never half-written: the engine with real watchdog on real files and
a fake pipeline. The rule itself is pinned in test_decide.py; this pins the engine's use of it."""

from __future__ import annotations

import os
import time

from devloop import events as ev
from tests.unit.core.test_engine_loop import FakePipeline, engine, project


def test_a_config_saved_in_two_writes_is_read_once_settled_not_half_written(tmp_path):
    cfg = project(tmp_path, {"api": ""})
    # a quiet period long enough that a loaded machine cannot split the two writes
    cfg.write_text(cfg.read_text().replace("quiet_period_ms: 50", "quiet_period_ms: 1500"))
    good = cfg.read_text()
    pipe = FakePipeline(hold=False)
    with engine(cfg, pipe) as (_eng, rec):
        first = pipe.wait_calls(1)[0]
        mark = len(rec.events)
        with cfg.open("w") as f:
            f.flush()
            os.fsync(f.fileno())  # the watcher sees the truncated, empty file
            time.sleep(0.3)
            f.write(good.replace("    image: api\n", "    image: api\n    build_args: {V: '2'}\n"))
        assert rec.wait_for(lambda e: e.type == ev.CONFIG_LOADED, 20)
        # positive control: the new config is applied (one run with the new image identity)
        second = pipe.wait_calls(2)[1]
        assert second.digest != first.digest
        time.sleep(0.5)
        seen = [e.type for e in rec.events[mark:]]
        assert ev.CONFIG_INVALID not in seen
        assert seen.count(ev.CONFIG_LOADED) == 1 and len(pipe.calls) == 2
