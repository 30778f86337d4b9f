"""Scooby: a git repository in, a bootable Raspberry Pi K3S cluster image out."""

from pathlib import Path

__version__ = "2.0.0.dev0"

# schemas/ and templates/ beside the modules: symlinks in a checkout, copies in a wheel.
SCHEMAS_DIR = Path(__file__).parent / "schemas"
TEMPLATES_DIR = Path(__file__).parent / "templates"
