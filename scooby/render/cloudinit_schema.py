"""Run `cloud-init schema --config-file` over many files in one process.

Not imported by Scooby: `scooby.render.checks` runs this file with the interpreter cloud-init itself
runs under (its script's shebang), so it imports only the standard library and cloudinit.
It calls the very function the `cloud-init schema --config-file FILE` command calls,
once per file, which saves starting cloud-init (a quarter of a second) for each of 250 agents.

Usage: python3 cloudinit_schema.py FILE...; prints one JSON object a line:
{"path": FILE, "errors": [[LINE or null, MESSAGE], ...]}

A file under `etc/cloud/cloud.cfg.d/` is cloud-init's *base* configuration, not user data.
Its base-only keys (`datasource_list`, `network`, ...) are read by cloud-init itself, and
the user-data schema does not list them: cloud-init 22.4 (Debian 12) let unknown top-level
keys pass, 25.1 (Debian 13) rejects them. So such a file is checked without those keys;
every other key in it is checked as strictly as user data. The keys are the ones cloud-init's
"Base configuration" reference documents
(https://docs.cloud-init.io/en/latest/reference/base_config_reference.html).
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

FORMAT_MARK = re.compile(r"^format-l(\d+)\.c\d+$")
BASE_CONFIG_DIR = "/etc/cloud/cloud.cfg.d/"
BASE_ONLY_KEYS = {
    "datasource_list", "datasource", "network", "system_info", "cloud_init_modules",
    "cloud_config_modules", "cloud_final_modules", "def_log_file", "syslog_fix_perms",
    "log_cfgs", "output", "manual_cache_clean", "disable_network_activation", "reporting",
    "vendor_data", "vendor_data2", "allow_userdata", "disable_ec2_metadata",
}  # fmt: skip


def problems(path, schema):
    try:
        with redirect_stdout(io.StringIO()):  # deprecation notes, as the command prints them
            if BASE_CONFIG_DIR in path:
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
    rest = {key: value for key, value in config.items() if key not in BASE_ONLY_KEYS}
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
