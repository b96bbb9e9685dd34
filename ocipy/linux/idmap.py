"""uid/gid maps for a new user namespace, written by the parent into /proc/<pid>/."""


def map_text(mappings) -> str:
    """Pure: linux.uidMappings -> the text /proc/<pid>/uid_map takes."""
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)


def write_maps(pid: int, uid_mappings, gid_mappings, *, deny_setgroups: bool = False) -> None:
    if deny_setgroups:
        with open(f"/proc/{pid}/setgroups", "w") as f:
            f.write("deny")
    for name, mappings in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
        if not mappings:
            continue
        try:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(map_text(mappings))
        except OSError as e:
            raise OSError(e.errno, f"write {name} {map_text(mappings).strip()!r}: {e.strerror}") from None
