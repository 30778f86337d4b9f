"""Validate: schemas, cross-file rules and manifests over the loaded repository."""

__all__ = ["validate", "validated"]


def __getattr__(name: str):
    # Lazy, so that `python -m scooby.validate.manifests` (a pre-commit hook) runs the module
    # once as __main__ rather than after the package had already imported it.
    if name in __all__:
        from scooby.validate import validator

        return getattr(validator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
