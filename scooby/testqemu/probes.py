"""Probing the master's external side: a request each filtered service would answer."""

from __future__ import annotations

import socket
import struct

from scooby.core import layout

EXTERNAL_PROBES = (("tcp", 2049), ("tcp", 111), ("udp", 69), ("tcp", 53), ("tcp", layout.HTTP_PORT))
PROBE_NAMES = {2049: "NFS", 111: "rpcbind", 69: "TFTP", 67: "DHCP", 53: "DNS",
               layout.HTTP_PORT: "cloud-init seeds"}  # fmt: skip


def probe_port(port: int) -> int:
    """The forward (on the test namespace's loopback) to the master's external `port`."""
    return 20000 + [p for _proto, p in EXTERNAL_PROBES].index(port)


def probe_payload(proto: str, port: int) -> bytes:
    """A request each service answers: an RPC NULL call to NFS and rpcbind, a TFTP read
    request, a DNS query over TCP, an HTTP request."""
    if port in (2049, 111):
        program, version = (100003, 3) if port == 2049 else (100000, 2)
        call = struct.pack("!IIIIIIIIII", 0x5C0B_0001, 0, 2, program, version, 0, 0, 0, 0, 0)
        return struct.pack("!I", 0x8000_0000 | len(call)) + call
    if port == 69:
        return b"\x00\x01bootcode.bin\x00octet\x00"
    if port == 53:
        query = (
            struct.pack("!HHHHHH", 0x5C0B, 0x0100, 1, 0, 0, 0)
            + b"\x09localhost\x00\x00\x01\x00\x01"
        )
        return struct.pack("!H", len(query)) + query
    return b"GET / HTTP/1.0\r\n\r\n"


def probe(netns: str, proto: str, port: int, host: str, to_port: int, wait: float = 8) -> bool:
    """Whether the service at host:to_port (inside `netns`) answers its probe in time."""
    from scooby.testqemu.bootrom import inside

    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with inside(netns), socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(wait)
        try:
            if proto == "tcp":
                s.connect((host, to_port))
                s.sendall(probe_payload(proto, port))
                return len(s.recv(4096)) > 0
            s.sendto(probe_payload(proto, port), (host, to_port))
            return len(s.recvfrom(4096)[0]) > 0
        except OSError:  # refused, reset, timed out: no answer
            return False
