"""What the commands print, shared by the click CLI and the fast path (runc's formats)."""

from . import jsonfast


def state_json(state: dict) -> str:
    return jsonfast.dumps(state, indent=2)


def list_output(states: list[dict], fmt: str = "table", quiet: bool = False) -> str:
    if quiet:
        return "".join(s["id"] + "\n" for s in states)
    if fmt == "json":
        return jsonfast.dumps(states or None) + "\n"
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s.get("owner", "")) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("   ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() + "\n" for r in rows)
