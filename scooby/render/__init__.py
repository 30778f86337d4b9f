"""Render: the validated Cluster through templates/** into plain files."""

from scooby.render.renderer import Rendered, render

__all__ = ["Rendered", "render"]
