from ipaddress import IPv4Address

from scooby import load


def test_defaults_are_the_originals(repo):
    loaded = load.load(repo, environ={})
    assert loaded.diagnostics == ()
    m = loaded.cluster.master
    assert (m.hostname, str(m.external.address), str(m.gateway)) == (
        "buffy",
        "192.168.1.64/24",
        "192.168.1.1",
    )
    assert (str(m.internal.address), m.internal.domain) == ("192.168.64.1/24", "sunnydale")
    assert loaded.cluster.secrets.default_user == "spike"
    assert m.base.kind == "debian"
    (willow,) = loaded.cluster.agents
    assert (willow.name, willow.ip, willow.pxe_id) == (
        "willow",
        IPv4Address("192.168.64.65"),
        "c6811a52",
    )
