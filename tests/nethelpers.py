"""Network helpers the tests share: a throwaway CA and the HTTPS server a release is pulled
from (tests/deploy: scooby-update's unit tests on loopback, and the day-two QEMU test on the
test's own network), and a DNS A lookup (the master's dnsmasq answering, live or in QEMU).

The HTTPS server is real: Python's http.server behind ssl, with a server certificate signed by
a CA made here by openssl, as a user's private CA would sign their release server's.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scooby.testqemu.bootrom import inside

OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
default_ca = test
[test]
dir = {folder}
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[ca_cert]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:{address}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
# Valid since a year ago, as a release server's certificate usually is: a master has no
# clock of its own (a Pi has no RTC) and starts from the time fake-hwclock saved, which can
# be the image's build time until NTP answers (none does in the QEMU test).
VALID_BEFORE, VALID_AFTER = 365 * 86400, 2 * 86400


def make_ca(folder: Path, address: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for IP `address` (openssl), both
    valid from a year ago to two days ahead: (the CA's certificate, to trust; the server's
    certificate; the server's key)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "openssl.cnf"
    config.write_text(OPENSSL_CONFIG.format(folder=folder, address=address))
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("01\n")
    now = time.time()
    start, end = (time.strftime("%Y%m%d%H%M%SZ", time.gmtime(now + d))
                  for d in (-VALID_BEFORE, VALID_AFTER))  # fmt: skip
    dates = ["-startdate", start, "-enddate", end]
    ca, ca_key, ca_request = folder / "ca.pem", folder / "ca-key.pem", folder / "ca.csr"
    cert, key, request = folder / "cert.pem", folder / "key.pem", folder / "cert.csr"
    sign = ["ca", "-batch", "-notext", "-config", config, "-keyfile", ca_key, *dates]
    for argv in (
        ["req", "-new", "-config", config, *EC, "-subj", "/CN=Scooby test CA",
         "-keyout", ca_key, "-out", ca_request],
        [*sign, "-selfsign", "-in", ca_request, "-extensions", "ca_cert", "-out", ca],
        ["req", "-new", "-config", config, *EC, "-subj", f"/CN={address}",
         "-keyout", key, "-out", request],
        [*sign, "-cert", ca, "-in", request, "-extensions", "server", "-out", cert],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, argv)], check=True, capture_output=True)
    return ca, cert, key


SERVER = textwrap.dedent(
    """
    import functools, http.server, ssl, sys
    folder, cert, key, host = sys.argv[1:5]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """
)


@contextmanager
def https_server(
    folder: Path,
    cert: Path,
    key: Path,
    host: str = "127.0.0.1",
    netns: str | None = None,
    log: Path | None = None,
) -> Iterator[int]:
    """Serve `folder` over TLS on `host` (inside network namespace `netns` if given), on a
    free port, which it yields; the request log goes to `log` (else nowhere)."""
    argv = [sys.executable, "-c", SERVER, str(folder), str(cert), str(key), host]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    with open(log or "/dev/null", "w") as stderr:
        server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        line = server.stdout.readline()
        if not line.strip().isdigit():
            server.wait(timeout=10)
            raise RuntimeError(f"the HTTPS server did not start (exit {server.returncode})")
        yield int(line)
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()


def dns_lookup(netns: str, server: str, name: str, wait: float = 5) -> list[ipaddress.IPv4Address]:
    """The A records the DNS server at `server` (inside `netns`) gives for `name`; a socket
    error (a timeout: no answer) is raised."""
    qid = random.getrandbits(16)
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack("!HH", 1, 1)  # A, IN
    with inside(netns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        s.sendto(query, (server, 53))
        reply = s.recv(4096)
    assert struct.unpack("!H", reply[:2])[0] == qid
    answers = struct.unpack("!H", reply[6:8])[0]
    i = len(query)
    found = []
    for _ in range(answers):
        i += 2 if reply[i] & 0xC0 == 0xC0 else reply.index(b"\0", i) + 1 - i
        kind, _cls, _ttl, length = struct.unpack("!HHIH", reply[i : i + 10])
        if kind == 1:
            found.append(ipaddress.IPv4Address(reply[i + 10 : i + 10 + length]))
        i += 10 + length
    return found
