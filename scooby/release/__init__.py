"""Release: artifacts from the built image (`make`); scooby.release.publish uploads them."""

from scooby.release.artifacts import make

__all__ = ["make"]
