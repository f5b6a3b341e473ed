"""The one error of the config layer."""


class ConfigError(ValueError):
    """A configuration problem, phrased as one line naming the key and what is allowed."""
