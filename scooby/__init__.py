"""Scooby: a git repository in, a bootable Raspberry Pi K3S cluster image out."""

__version__ = "2.0.0.dev0"
