"""Scooby: a git repository in, a bootable Raspberry Pi K3S cluster image out.

One package per stage, in the data flow's order: load -> validate -> render -> build ->
{testqemu, release}, over core (model, errors, paths) and util; cli on top. A stage imports
only the ones before it (the import-linter contract in pyproject.toml).
"""

__version__ = "2.0.0.dev0"
