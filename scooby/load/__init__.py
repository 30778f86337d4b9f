"""Load: the user's repository (config, .env, agents/, server/) into one Cluster."""

from scooby.load.reader import Loaded, load, load_or_raise

__all__ = ["Loaded", "load", "load_or_raise"]
