"""User-facing errors: the CLI prints their message alone, without a traceback."""


class FlowPOError(Exception):
    """Something the user can fix (bad config, missing model, no Docker engine)."""


class ConfigError(FlowPOError):
    """A config file or override names an unknown key or holds a value of the wrong type."""
