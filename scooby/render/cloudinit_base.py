"""What makes a cloud-config file cloud-init's *base* configuration, and which of its keys
only the base configuration has.

Standard library only: `cloudinit_schema.py` (run by cloud-init's own interpreter, beside
this file) and the tests both read it. A file under `etc/cloud/cloud.cfg.d/` is base
configuration, not user data; its base-only keys are read by cloud-init itself and the
user-data schema does not list them (cloud-init 22.4 let unknown top-level keys pass, 25.1
rejects them). The keys are the ones cloud-init's "Base configuration" reference documents
(https://docs.cloud-init.io/en/latest/reference/base_config_reference.html).
"""

BASE_CONFIG_DIR = "/etc/cloud/cloud.cfg.d/"
BASE_ONLY_KEYS = frozenset({
    "datasource_list", "datasource", "network", "system_info", "cloud_init_modules",
    "cloud_config_modules", "cloud_final_modules", "def_log_file", "syslog_fix_perms",
    "log_cfgs", "output", "manual_cache_clean", "disable_network_activation", "reporting",
    "vendor_data", "vendor_data2", "allow_userdata", "disable_ec2_metadata",
})  # fmt: skip


def is_base_config(path: str) -> bool:
    return BASE_CONFIG_DIR in path


def user_data_part(config: dict) -> dict:
    """The keys of a base-configuration file that the user-data schema checks."""
    return {key: value for key, value in config.items() if key not in BASE_ONLY_KEYS}
