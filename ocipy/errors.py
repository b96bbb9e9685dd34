"""One error hierarchy: each error carries the message a person needs and the exit code.

The CLI prints `str(error)` to stderr, writes it as the JSON log line engines read,
and exits with `error.exit_code`. Messages that engines match on (see ENGINES.md)
are spelled exactly as runc spells them.
"""


class OcipyError(Exception):
    """Base of every error ocipy reports to a user."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(OcipyError):
    """config.json is missing, not JSON, or breaks a schema or semantic rule.

    The message names the JSON path and the rule, for example
    `config.json: /process/capabilities/bounding/2: "CAP_FOO" is not a capability`.
    """


class ContainerNotFound(OcipyError):
    def __init__(self, container_id: str):
        super().__init__("container does not exist")
        self.container_id = container_id


class ContainerExists(OcipyError):
    def __init__(self, container_id: str):
        super().__init__(f"container with id exists: {container_id}")


class InvalidState(OcipyError):
    """The operation is not allowed in the container's current status."""


class SetupError(OcipyError):
    """The container could not be set up (namespaces, mounts, cgroups, process)."""


class HookError(OcipyError):
    """A lifecycle hook failed or timed out."""
