"""Run `cloud-init schema --config-file` over many files in one process.

Not imported by Scooby: `scooby.render.checks` runs this file with the interpreter cloud-init itself
runs under (its script's shebang), so it imports only the standard library and cloudinit.
It calls the very function the `cloud-init schema --config-file FILE` command calls,
once per file, which saves starting cloud-init (a quarter of a second) for each of 250 agents.

Usage: python3 cloudinit_schema.py FILE...; prints one JSON object a line:
{"path": FILE, "errors": [[LINE or null, MESSAGE], ...]}

A file under `etc/cloud/cloud.cfg.d/` is cloud-init's base configuration, not user data: it is
checked without its base-only keys (cloudinit_base.py, beside this file), and every other
key in it as strictly as user data.
"""

import io
import json
import re
import sys
from contextlib import redirect_stdout

import yaml
from cloudinit import safeyaml
from cloudinit.config.schema import (
    SchemaValidationError,
    get_schema,
    validate_cloudconfig_file,
    validate_cloudconfig_schema,
)
from cloudinit_base import is_base_config, user_data_part  # beside this file: sys.path[0]

FORMAT_MARK = re.compile(r"^format-l(\d+)\.c\d+$")


def problems(path, schema):
    try:
        with redirect_stdout(io.StringIO()):  # deprecation notes, as the command prints them
            if is_base_config(path):
                _check_base_config(path, schema)
            else:
                validate_cloudconfig_file(path, schema, False)
    except SchemaValidationError as exc:
        return [[_line(path, p.path), f"{p.path}: {p.message}"] for p in exc.schema_errors]
    except RuntimeError as exc:
        return [[None, str(exc)]]
    return []


def _check_base_config(path, schema):
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise RuntimeError(f"{path} is not a YAML mapping")
    rest = user_data_part(config)
    validate_cloudconfig_schema(rest, schema=schema, strict=True, log_details=False)


def _line(path, key):
    """The line of a schema path like `users.0.name`, as `cloud-init schema --annotate` finds it."""
    found = FORMAT_MARK.match(key)
    if found:
        return int(found.group(1))
    try:
        with open(path, encoding="utf-8") as f:
            _, marks = safeyaml.load_with_marks(f.read())
    except Exception:
        return None
    while key:
        if key in marks:
            return marks[key]
        key = key.rpartition(".")[0]
    return None


def main(paths):
    schema = get_schema()
    for path in paths:
        print(json.dumps({"path": path, "errors": problems(path, schema)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
