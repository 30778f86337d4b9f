"""Build: the rendered tree and a base root filesystem into images/scooby.img."""

from scooby.build.pipeline import build

__all__ = ["build"]
