"""K3S's rules in validate: the release's end of life, networks, NodePorts, the manifests
folder as K3S reads it, external DHCP, a user config.yaml (docs/k3s.md)."""

from __future__ import annotations

import shutil
from datetime import date

from conftest import ROOT, WILLOW, write_repo

from scooby.validate import validate

MANIFESTS = "server/var/lib/rancher/k3s/server/manifests"


def _messages(repo, **kw):
    _, diagnostics = validate(repo, environ={}, **kw)
    return [str(d) for d in diagnostics]


def _summary(repo) -> str:
    from scooby.cli.validate import summary

    cluster, _ = validate(repo, environ={})
    return summary(cluster)


def _repo(tmp_path, config="", files=None):
    return write_repo(
        tmp_path / "repo", {"config": config, "agents/willow.agent": WILLOW, **(files or {})}
    )


# --- the release ----------------------------------------------------------------------------


def test_an_end_of_life_minor_is_refused_with_its_date(tmp_path):
    repo = _repo(tmp_path, "LC_K3S_VERSION=v1.31.14+k3s1\n")
    (msg,) = [m for m in _messages(repo) if "LC_K3S_VERSION" in m]
    assert msg.startswith("config:1: error: LC_K3S_VERSION: K3S 1.31 reached its end of life")
    assert "2025-10-28" in msg and "scooby k3s pin" in msg


def test_a_minor_older_than_the_table_ends_no_later_than_the_next(tmp_path):
    repo = _repo(tmp_path, "LC_K3S_VERSION=v1.32.9+k3s1\n")
    (msg,) = [m for m in _messages(repo) if "LC_K3S_VERSION" in m]
    assert "no later than 1.33" in msg and "2026-06-28" in msg


def test_the_default_pin_is_supported_until_its_date():
    from scooby.load import schema
    from scooby.validate.k3s import end_of_life

    eol, _ = end_of_life(schema.defaults("config")["LC_K3S_VERSION"])
    assert eol == date(2027, 6, 28)


def test_a_minor_the_table_does_not_know_is_a_warning(tmp_path):
    repo = _repo(tmp_path, "LC_K3S_VERSION=v1.99.0+k3s1\n")
    (msg,) = [m for m in _messages(repo) if "LC_K3S_VERSION" in m]
    assert ": warning: " in msg and "not in Scooby's release table" in msg


# --- networks and ports ---------------------------------------------------------------------


def test_pod_network_overlapping_the_internal_network_is_an_error(tmp_path):
    repo = _repo(tmp_path, "LC_K3S_CLUSTER_CIDR=192.168.64.0/18\n")
    assert any(
        m.startswith("config:1: error: LC_K3S_CLUSTER_CIDR: K3S's pod network 192.168.64.0/18")
        and "LC_INTERNAL_NET" in m
        for m in _messages(repo)
    )


def test_service_network_overlapping_the_external_network_is_an_error(tmp_path):
    repo = _repo(
        tmp_path,
        "LC_EXTERNAL_NET=10.43.0.0/24\nLC_EXTERNAL_IP=10.43.0.5\nLC_EXTERNAL_GW=10.43.0.1\n",
    )
    assert any(
        "K3S's service network 10.43.0.0/16 overlaps LC_EXTERNAL_NET" in m for m in _messages(repo)
    )


def test_the_originals_node_port_range_is_refused(tmp_path):
    repo = _repo(tmp_path, "LC_K3S_NODE_PORT_RANGE=1000-32767\n")
    (msg,) = [m for m in _messages(repo) if "LC_K3S_NODE_PORT_RANGE" in m]
    assert "2049 (NFS)" in msg and "start the range above" in msg.lower()


def test_node_ports_are_checked_against_the_range_and_the_open_ports(tmp_path):
    service = """\
apiVersion: v1
kind: Service
metadata:
  name: minecraft
spec:
  type: NodePort
  selector: {app: minecraft}
  ports:
    - port: 25565
      nodePort: 25565
"""
    files = {f"{MANIFESTS}/minecraft.yaml": service}
    out = _messages(_repo(tmp_path / "a", "", files))
    assert any(
        m.startswith(
            f"{MANIFESTS}/minecraft.yaml:10: error: Service/minecraft: nodePort 25565 is outside"
        )
        for m in out
    )
    config = "LC_K3S_NODE_PORT_RANGE=25000-32767\n"
    out = _messages(_repo(tmp_path / "b", config, files))
    assert any("warning: Service/minecraft: nodePort 25565/tcp is not reachable" in m for m in out)
    config += 'LC_EXTERNAL_OPEN_PORTS="25565/tcp"\n'
    out = _messages(_repo(tmp_path / "c", config, files))
    assert not any("minecraft" in m for m in out), out


# --- files K3S reads -------------------------------------------------------------------------


def test_a_user_k3s_config_points_to_config_yaml_d(tmp_path):
    repo = _repo(tmp_path, "", {"server/etc/rancher/k3s/config.yaml": "node-label: [a=b]\n"})
    (msg,) = [m for m in _messages(repo) if "config.yaml" in m]
    assert msg.startswith("server/etc/rancher/k3s/config.yaml: error:")
    assert "config.yaml.d/" in msg
    ok = _repo(tmp_path / "ok", "", {"server/etc/rancher/k3s/config.yaml.d/10-mine.yaml": "a: b\n"})
    assert not any("config.yaml" in m for m in _messages(ok))


def test_external_dhcp_opens_67_or_says_how(tmp_path):
    """The README's example (tests/data/example-repo) and one without `interface=eth0`."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "tests/data/example-repo", repo)
    rel = "server/etc/dnsmasq.d/10-external-dhcp.conf"
    assert not any(m.startswith(rel) for m in _messages(repo))
    assert f"external 192.168.1.64: 22/tcp, 6443/tcp, 67/udp (DHCP, {rel}:4)" in _summary(repo)
    text = (repo / rel).read_text().replace("interface=eth0\n", "")
    (repo / rel).write_text(text)
    (msg,) = [m for m in _messages(repo) if m.startswith(rel)]
    assert ": error: " in msg and "add `interface=eth0`" in msg


def test_a_metallb_pool_overlapping_an_external_dhcp_range_is_an_error(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "tests/data/example-repo", repo)
    pool = repo / MANIFESTS / "metallb.yml"
    pool.write_text(
        pool.read_text().replace("192.168.1.65-192.168.1.127", "192.168.1.65-192.168.1.130")
    )
    assert any(
        "error: IPAddressPool/first-pool: MetalLB pool 192.168.1.65-192.168.1.130 overlaps "
        "the DHCP range 192.168.1.128-192.168.1.240" in m
        for m in _messages(repo)
    )


def test_metallb_in_the_manifests_turns_servicelb_off_with_a_line(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "tests/data/example-repo", repo)
    lines = _summary(repo).splitlines()
    assert "ServiceLB off" in lines[2]
    assert lines[3].strip() == (
        f"ServiceLB off: MetalLB is in the manifests ({MANIFESTS}/metallb.yml:6) and needs it off "
        "(LC_K3S_SERVICELB=auto)"
    )
    assert "external LoadBalancer addresses: 192.168.1.65-192.168.1.127" in lines
    assert not any("ServiceLB" in m for m in _messages(repo))  # a line, not a warning
    write_repo(repo, {"config": "LC_K3S_SERVICELB=on\n"})
    assert "ServiceLB on" in _summary(repo)


# --- the manifests folder as K3S's deploy controller reads it ------------------------------

CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  a: b
"""


def test_kind_list_is_expanded_and_each_item_checked(tmp_path):
    text = """\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: fine
    data: {a: b}
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: typo
    dataa: {a: b}
"""
    repo = _repo(tmp_path, "", {f"{MANIFESTS}/app.yaml": text})
    out = [m for m in _messages(repo) if "app.yaml" in m]
    assert out == [
        f"{MANIFESTS}/app.yaml:13: error: ConfigMap/typo: dataa: unknown field (did you mean data?)"
    ]


def test_invalid_yaml_in_a_helm_charts_values_content_is_caught(tmp_path):
    text = """\
apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: pihole
  namespace: kube-system
spec:
  chart: pihole
  repo: https://mojo2600.github.io/pihole-kubernetes/
  valuesContent: |-
    serviceDns:
      type: LoadBalancer
     loadBalancerIP: 192.168.1.66
"""
    repo = _repo(tmp_path, "", {f"{MANIFESTS}/pihole.yaml": text})
    (msg,) = [m for m in _messages(repo) if "pihole.yaml" in m]
    assert msg.startswith(
        f"{MANIFESTS}/pihole.yaml:12: error: HelmChart/pihole: spec.valuesContent: not valid YAML"
    )


def test_same_base_name_in_subfolders_collide(tmp_path):
    files = {
        f"{MANIFESTS}/a/app.yaml": CM.format(name="one"),
        f"{MANIFESTS}/b/app.yml": CM.format(name="two"),
    }
    (msg,) = [m for m in _messages(_repo(tmp_path, "", files)) if "AddOn" in m]
    assert msg.startswith(
        f"{MANIFESTS}/b/app.yml: error: K3S tracks this file as AddOn 'app', "
        f"as it does {MANIFESTS}/a/app.yaml"
    )


def test_a_file_named_like_a_packaged_manifest_is_refused(tmp_path):
    files = {f"{MANIFESTS}/traefik.yaml": CM.format(name="mine")}
    (msg,) = [m for m in _messages(_repo(tmp_path, "", files)) if "traefik" in m]
    assert "rewrites its packaged 'traefik' manifest at every start" in msg


def test_dotfiles_are_skipped_and_skip_files_are_not_ignored_files(tmp_path):
    files = {
        f"{MANIFESTS}/.draft.yaml": "not: [valid\n",
        f"{MANIFESTS}/traefik.yaml.skip": "",
        f"{MANIFESTS}/app.yaml": CM.format(name="app"),
        f"{MANIFESTS}/app.yaml.skip": "",
    }
    out = [m for m in _messages(_repo(tmp_path, "", files)) if MANIFESTS in m]
    assert out == [
        f"{MANIFESTS}/.draft.yaml: warning: "
        "K3S skips files whose name starts with a dot: never applied"
    ]
