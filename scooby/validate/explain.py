"""The schemas as documentation: `scooby validate --explain KEY` and `--settings-table` read
them, the single source of every key's description, default and format."""

from __future__ import annotations

from scooby.load import schema

# Where each schema's keys are written, for --explain and the settings table.
FILES = {"config": "config", "agent": "agents/NAME.agent", "env": ".env (secrets)"}


def _format(prop: dict) -> str:
    fmt = prop.get("format", "")
    optional = fmt.endswith("-or-empty")
    fmt = fmt.removesuffix("-or-empty")
    if fmt in schema.FORMATS:
        text = schema.FORMATS[fmt][1]
        return f"{text} (or empty)" if optional else text
    if "enum" in prop:
        return (
            "one of "
            + ", ".join(f"`{v}`" for v in prop["enum"] if v)
            + (" (or empty)" if "" in prop["enum"] else "")
        )
    if "pattern" in prop:
        return f"matches `{prop['pattern']}`"
    return "text"


def explain(key: str) -> str | None:
    """KEY's file, description, default and format; None when no setting has that name."""
    found = schema.find_key(key.upper())
    if found is None:
        return None
    kind, prop = found
    required = key.upper() in schema.schema(kind).get("required", [])
    default = "(required)" if required else repr(prop.get("default", ""))
    return (
        f"{key.upper()}  in {FILES[kind]}\n"
        f"  {prop['description']}\n"
        f"  default: {default}\n"
        f"  format:  {_format(prop)}"
    )


def no_such_key(key: str) -> str:
    """The message for an unknown KEY, with the nearest names."""
    return f"no setting named {key}{schema.suggest(key, schema.all_keys())}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    rows = ["| Key | File | Default | Format | Description |", "|---|---|---|---|---|"]
    for kind in schema.KINDS:
        required = schema.schema(kind).get("required", [])
        for key, prop in schema.properties(kind).items():
            default = (
                "*required*"
                if key in required
                else f"`{prop['default']}`"
                if prop.get("default")
                else ""
            )
            rows.append(
                f"| `{key}` | `{FILES[kind].split(' ')[0]}` | {_cell(default)} | "
                f"{_cell(_format(prop))} | {_cell(prop['description'])} |"
            )
    return "\n".join(rows) + "\n"
