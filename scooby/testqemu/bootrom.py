"""A Raspberry Pi boot ROM's side of a network boot: DHCP with the Pi's PXE vendor class, then TFTP.

`scooby test-qemu` plays it on the test's internal network, from the agent's MAC, against the
master VM's real dnsmasq, to fetch the agent's kernel, initrd and cmdline.txt. The packets are
the ones the Pi 3 and Pi 4 boot ROMs send; tests/test_live_netboot.py plays them against a
rendered dnsmasq. Sockets are opened inside a network namespace of the caller's (`inside`), so
nothing reaches any other network.
"""

from __future__ import annotations

import ctypes
import io
import ipaddress
import os
import random
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PI_VENDOR_CLASS = b"PXEClient:Arch:00000:UNDI:002001"  # what the Pi 3 and Pi 4 boot ROMs send
DHCP_MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, ACK = 1, 2, 3, 5
TFTP_BLKSIZE = 1468  # what a Pi 4 asks for (RFC 2348)
TFTP_RETRIES = 3  # sends of the request (and of each ACK) before giving up, as a ROM resends

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


@contextmanager
def inside(netns: str) -> Iterator[None]:
    """Run the body in a network namespace (this thread only): its sockets stay there."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def dhcp_frame(mac: str, xid: int, kind: int, extra: dict[int, bytes] | None = None) -> bytes:
    """An Ethernet frame with the DHCP message a Pi boot ROM sends, from 0.0.0.0:68."""
    hw = bytes.fromhex(mac.replace(":", ""))
    options = {
        53: bytes([kind]),
        60: PI_VENDOR_CLASS,
        93: b"\x00\x00",  # client architecture: x86 BIOS, as the Pi claims
        94: b"\x01\x02\x01",  # UNDI 2.1
        97: b"\x00" + uuid.UUID(int=int(mac.replace(":", ""), 16)).bytes,  # client GUID
        55: bytes([1, 3, 6, 15, 43, 54, 60, 66, 67]),
        **(extra or {}),
    }
    bootp = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1,  # BOOTREQUEST
        1,  # Ethernet
        6,
        0,
        xid,
        0,
        0x8000,  # broadcast the reply: we have no address yet
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        b"\0" * 4,
        hw,
        b"",
        b"",
    )
    body = DHCP_MAGIC + b"".join(bytes([k, len(v)]) + v for k, v in options.items()) + b"\xff"
    payload = bootp + body
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\0" * 4, b"\xff" * 4
    )
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\xff" * 6 + hw + b"\x08\x00" + ip + udp


@dataclass
class Reply:
    kind: int
    yiaddr: ipaddress.IPv4Address
    siaddr: ipaddress.IPv4Address
    options: dict[int, bytes]

    @property
    def server(self) -> ipaddress.IPv4Address:
        """The TFTP server (option 66, else the server identifier)."""
        if 66 in self.options:
            return ipaddress.IPv4Address(self.options[66].rstrip(b"\0").decode())
        return ipaddress.IPv4Address(self.options[54])


def parse_reply(frame: bytes, xid: int) -> Reply | None:
    """The DHCP reply in an Ethernet frame for transaction `xid`, or None for anything else."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    ihl = (frame[14] & 0x0F) * 4
    udp = frame[14 + ihl :]
    if struct.unpack("!H", udp[2:4])[0] != 68:
        return None
    bootp = udp[8:]
    if (
        len(bootp) < 240
        or bootp[0] != 2
        or struct.unpack("!I", bootp[4:8])[0] != xid
        or bootp[236:240] != DHCP_MAGIC
    ):
        return None
    options, i = {}, 240
    while i < len(bootp) and bootp[i] != 255:
        if bootp[i] == 0:
            i += 1
            continue
        options[bootp[i]] = bootp[i + 2 : i + 2 + bootp[i + 1]]
        i += 2 + bootp[i + 1]
    if 53 not in options:
        return None
    return Reply(
        options[53][0],
        ipaddress.IPv4Address(bootp[16:20]),
        ipaddress.IPv4Address(bootp[20:24]),
        options,
    )


def pxe_suboptions(option43: bytes) -> dict[int, bytes]:
    found, i = {}, 0
    while i < len(option43) and option43[i] != 255:
        found[option43[i]] = option43[i + 2 : i + 2 + option43[i + 1]]
        i += 2 + option43[i + 1]
    return found


def dhcp(
    netns: str,
    device: str,
    mac: str,
    kind: int,
    extra: dict[int, bytes] | None = None,
    wait: float = 5,
) -> Reply | None:
    """A DHCP message from `device` in `netns`, sent every second as a boot ROM does, until
    the server replies (the reply) or `wait` seconds pass (None)."""
    xid = random.getrandbits(32)
    frame = dhcp_frame(mac, xid, kind, extra)
    with (
        inside(netns),
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)) as s,
    ):
        s.bind((device, 0))
        s.settimeout(0.2)
        deadline, resend = time.monotonic() + wait, 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= resend:
                s.send(frame)
                resend = time.monotonic() + 1
            try:
                reply = parse_reply(s.recv(2048), xid)
            except TimeoutError:
                continue
            if reply is not None:
                return reply
    return None


def lease(netns: str, device: str, mac: str, attempts: int = 5) -> Reply:
    """DISCOVER then REQUEST, as a Pi 4 does: the ACK (retrying, as the ROM does)."""
    for _ in range(attempts):
        offer = dhcp(netns, device, mac, DISCOVER)
        if offer is None or offer.kind != OFFER:
            continue
        server = offer.options.get(54, b"")
        ack = dhcp(netns, device, mac, REQUEST, {50: offer.yiaddr.packed, 54: server})
        if ack is not None and ack.kind == ACK:
            return ack
    raise TimeoutError(f"no DHCP lease for {mac} after {attempts} DISCOVERs")


def tftp_get(
    netns: str,
    server: ipaddress.IPv4Address | str,
    filename: str,
    blksize: int | None = TFTP_BLKSIZE,
    timeout: float = 5,
) -> bytes:
    """One file over TFTP, as the ROM asks for it: RFC 1350, with the RFC 2348 block size a
    Pi 4 asks for; the request and each ACK are sent again when no answer comes (tftpy)."""
    import tftpy

    options = {"blksize": blksize} if blksize else {}
    out = io.BytesIO()
    try:
        with inside(netns):  # tftpy opens its socket in download(): inside the namespace
            client = tftpy.TftpClient(str(server), 69, options)
            client.download(filename, out, timeout=timeout, retries=TFTP_RETRIES)
    except tftpy.TftpTimeout as exc:
        raise TimeoutError(f"no TFTP answer from {server} for {filename}") from exc
    except tftpy.TftpException as exc:
        raise FileNotFoundError(f"TFTP error for {filename}: {exc}") from exc
    return out.getvalue()
