"""test-qemu: boot the built image in QEMU and network-boot an agent from it."""

from scooby.testqemu.session import Session, check_host, pick_agent

__all__ = ["Session", "check_host", "pick_agent"]
