"""`events`: the container's stats as runc prints them, once or every interval, plus OOM events."""

import json
import time


def stats_event(container) -> dict:
    return {"type": "stats", "id": container.id, "data": container.stats()}


def oom_count(stats: dict) -> int:
    """Pure: the OOM kill counter from a stats "data" object (0 when the host has none)."""
    memory = stats.get("memory") or {}
    raw = memory.get("raw") or {}
    return int(raw.get("oom_kill", memory.get("oom_kill", 0)) or 0)


def stream(container, interval: float, write) -> None:
    """Write a stats event every `interval` seconds and an oom event whenever the kill counter
    grows, until the container stops."""
    last_oom = None
    while container.status != "stopped":
        event = stats_event(container)
        ooms = oom_count(event["data"])
        if last_oom is not None and ooms > last_oom:
            write(json.dumps({"type": "oom", "id": container.id}))
        last_oom = ooms
        write(json.dumps(event))
        time.sleep(interval)
