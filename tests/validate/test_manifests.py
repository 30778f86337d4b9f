"""Manifests under server/var/lib/rancher/k3s/server/manifests: exact file, line and key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import WILLOW, write_repo

from scooby.core.model import MANIFESTS
from scooby.validate import k8s_schemas
from scooby.validate.validator import validate

NS = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: metallb-system\n"
POOL = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
    - {addresses}
"""
HELM = """\
apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: pihole
  namespace: pihole
spec:
  chart: pihole
  {field}: |-
    ...
"""


def problems(tmp_path, files: dict[str, str], config: str = "") -> list[str]:
    repo = write_repo(
        tmp_path / "repo",
        {"config": config, "agents/willow.agent": WILLOW}
        | {f"{MANIFESTS}/{k}": v for k, v in files.items()},
    )
    return [str(d) for d in validate(repo, environ={})[1]]


def at(name: str, line: int | None) -> str:
    return f"{MANIFESTS}/{name}:{line}" if line else f"{MANIFESTS}/{name}"


def test_good_manifests_pass(tmp_path):
    files = {
        "ns.yaml": NS,
        "pool.yml": "---\n" + POOL.format(addresses="192.168.1.65-192.168.1.127"),
        "helm.yaml": HELM.format(field="valuesContent"),
        "cm.json": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},'
        ' "data": {"a": "b"}}',
        "sub/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\nspec:\n"
        "  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
        "    spec:\n      containers: [{name: c, image: nginx}]\n",
    }
    assert problems(tmp_path, files) == []


BAD = {
    "yaml syntax": ({"a.yaml": NS + "---\nkind: [\n"}, at("a.yaml", 7) + ": error: YAML syntax"),
    "json syntax": ({"a.json": '{\n  "kind": }\n'}, at("a.json", 2) + ": error: not valid JSON"),
    "core kind, wrong type": (
        {
            "d.yaml": NS + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
            "spec:\n  replicas: two\n  selector: {}\n  template: {}\n"
        },
        at("d.yaml", 11) + ": error: Deployment/web: spec.replicas: 'two' is not of type "
        "'integer', 'null'",
    ),
    "core kind, unknown field (strict)": (
        {"n.yaml": NS.replace("metadata:", "metdata: {}\nmetadata:")},
        at("n.yaml", 3) + ": error: Namespace/metallb-system: metdata: unknown field "
        "(did you mean metadata?)",
    ),
    "core kind misspelt": (
        {"n.yaml": NS.replace("kind: Namespace", "kind: Namespcae")},
        at("n.yaml", 2) + ": error: Namespcae/metallb-system: Kubernetes 1.36 has no kind "
        "'Namespcae' in v1 (did you mean Namespace?)",
    ),
    "missing name": (
        {"n.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n"},
        at("n.yaml", 3) + ": error: Namespace: metadata.name: required",
    ),
    "no apiVersion": (
        {"n.yaml": "kind: Namespace\nmetadata:\n  name: x\n"},
        at("n.yaml", 1) + ": error: apiVersion: required, a string",
    ),
    "not a mapping": ({"n.yaml": "- a\n- b\n"}, at("n.yaml", 1) + ": error: a manifest must be"),
    "HelmChart typo": (
        {"h.yaml": HELM.format(field="valueContent")},
        at("h.yaml", 8) + ": error: HelmChart/pihole: spec.valueContent: unknown field "
        "(did you mean valuesContent?)",
    ),
    "HelmChartConfig wrong type": (
        {
            "h.yaml": "apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata:\n"
            "  name: traefik\n  namespace: kube-system\nspec:\n  valuesContent: [1]\n"
        },
        at("h.yaml", 7) + ": error: HelmChartConfig/traefik: spec.valuesContent: [1] is not of "
        "type 'string', 'null'",
    ),
    "L2Advertisement wrong type": (
        {
            "l2.yaml": "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n"
            "  name: l2\nspec:\n  interfaces: eth0\n"
        },
        at("l2.yaml", 6) + ": error: L2Advertisement/l2: spec.interfaces: 'eth0' is not of "
        "type 'array'",
    ),
    "pool without addresses": (
        {"p.yaml": POOL.replace("  addresses:\n    - {addresses}\n", "  autoAssign: true\n")},
        at("p.yaml", 6) + ": error: IPAddressPool/first-pool: spec: 'addresses' is a required "
        "property",
    ),
    "pool contains the master": (
        {"p.yaml": POOL.format(addresses="192.168.1.64/26")},
        at("p.yaml", 8) + ": error: IPAddressPool/first-pool: spec.addresses[0]: "
        "'192.168.1.64/26' contains the master's external address (LC_EXTERNAL_IP) 192.168.1.64",
    ),
    "pool contains the gateway": (
        {"p.yaml": POOL.format(addresses="192.168.1.1 - 192.168.1.20")},
        at("p.yaml", 8) + ": error: IPAddressPool/first-pool: spec.addresses[0]: "
        "'192.168.1.1 - 192.168.1.20' contains the gateway (LC_EXTERNAL_GW) 192.168.1.1",
    ),
    "pool outside the external net": (
        {"p.yaml": POOL.format(addresses="192.168.64.100-192.168.64.120")},
        at("p.yaml", 8) + ": error: IPAddressPool/first-pool: spec.addresses[0]: "
        "'192.168.64.100-192.168.64.120' lies outside the external network 192.168.1.0/24 "
        "(LC_EXTERNAL_NET): MetalLB answers ARP on the master's external side",
    ),
    "pool range backwards": (
        {"p.yaml": POOL.format(addresses="192.168.1.99-192.168.1.70")},
        at("p.yaml", 8) + ": error: IPAddressPool/first-pool: spec.addresses[0]: "
        "'192.168.1.99-192.168.1.70' starts after it ends",
    ),
    "pool not an address": (
        {"p.yaml": POOL.format(addresses="first")},
        at("p.yaml", 8) + ": error: IPAddressPool/first-pool: spec.addresses[0]: 'first' is not "
        "a CIDR or a start-end range",
    ),
    "unknown CRD warns": (
        {"c.yaml": "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: c\n"},
        at("c.yaml", 2) + ": warning: Certificate/c: no schema for Certificate "
        "(cert-manager.io/v1) among Kubernetes 1.36's kinds or Scooby's vendored CRDs: "
        "not checked",
    ),
    "file k3s ignores warns": (
        {"app.yaml.txt": NS},
        at("app.yaml.txt", None) + ": warning: k3s applies only .yaml, .yml, .json files from the "
        "manifests folder; this one is ignored",
    ),
}


@pytest.mark.parametrize("files, expected", BAD.values(), ids=BAD.keys())
def test_bad_manifests_are_reported_at_their_line(tmp_path, files, expected):
    found = problems(tmp_path, files)
    assert any(f.startswith(expected) for f in found), found


def test_pool_follows_the_configured_external_net(tmp_path):
    config = "LC_EXTERNAL_NET=10.0.0.0/24\nLC_EXTERNAL_IP=10.0.0.2\nLC_EXTERNAL_GW=10.0.0.1\n"
    assert problems(tmp_path, {"p.yaml": POOL.format(addresses="10.0.0.100/30")}, config) == []
    bad = problems(tmp_path, {"p.yaml": POOL.format(addresses="10.0.0.0/24")}, config)
    assert [b.split(": spec")[0] for b in bad] == [
        at("p.yaml", 8) + ": error: IPAddressPool/first-pool"
    ] * 2


def test_unknown_crds_do_not_fail_validation(tmp_path):
    repo = write_repo(
        tmp_path / "r",
        {
            "config": "",
            f"{MANIFESTS}/c.yaml": "apiVersion: example.com/v1\nkind: Thing\nmetadata:\n"
            "  name: t\n",
        },
    )
    run = subprocess.run(
        [sys.executable, "-m", "scooby", "validate", "--repo", str(repo)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "warning: Thing/t: no schema" in run.stderr


def test_core_kinds_use_the_k3s_minor_or_the_nearest_shipped():
    assert k8s_schemas.k8s_version("1.31") == "1.31"
    assert k8s_schemas.k8s_version("1.99") == max(
        (k8s_schemas.k8s_version(f"1.{m}") for m in range(20, 60)), key=lambda v: int(v[2:])
    )
    assert k8s_schemas.k8s_version("1.2") == k8s_schemas.k8s_version("1.0")


def test_no_manifests_means_kubernetes_validate_is_never_imported(repo):
    code = (
        "import sys; from pathlib import Path; from scooby.validate import validate; "
        f"validate(Path({str(repo)!r}), environ={{}}); "
        "print('jsonschema' in sys.modules, any(m.startswith('kubernetes_validate') "
        "for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
