"""Exceptions shared across layers."""


class ConfigError(ValueError):
    """The configuration is invalid; the message says which setting and why."""
