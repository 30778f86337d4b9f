"""The test harness's copy of a Pi device tree: its concessions to what QEMU's board lacks.

The image's DTB is never changed: the Pi firmware passes it to the kernel as it is (with its
own edits at boot), and so must a real Pi 4. QEMU's raspi4b board (QEMU 10) models less than a
Pi 4B, so before a raspi4b run the harness copies the firmware's choice of tree into its work
folder and edits the copy with `fdtput` (Debian's device-tree-compiler). Each edit is a
concession of the test harness, named here with the reason, and each was shown necessary by
booting without it (docs/test-qemu.md).

QEMU itself already removes the nodes it knows it lacks (PCIe, GENET, RNG200, thermal:
raspi4_modify_dtb in hw/arm/raspi4b.c); the concessions below cover the rest of what Debian's
6.12 kernel needs to reach its root.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Concession:
    node: str  # the node's path in the tree
    reason: str
    prop: str = ""  # delete this property of the node; "" disables the node
    value: int | None = None  # with prop: set it to this 32-bit number instead of deleting it

    def argv(self, dtb: Path) -> list[str]:
        if self.prop and self.value is not None:
            return ["fdtput", "-t", "u", str(dtb), self.node, self.prop, str(self.value)]
        if self.prop:
            return ["fdtput", "-d", str(dtb), self.node, self.prop]
        return ["fdtput", "-t", "s", str(dtb), self.node, "status", "disabled"]

    def describe(self) -> str:
        if self.prop and self.value is not None:
            what = f"{self.node}: {self.prop} = {self.value}"
        else:
            what = f"{self.node}: no {self.prop}" if self.prop else f"{self.node} disabled"
        return f"{what} ({self.reason})"


# QEMU 10's raspi4b maps nothing at the Pi 4's HDMI blocks (0x7ef00000-0x7ef0ffff): a read
# there is a synchronous external abort, fatal in a built-in driver's init.
UNMAPPED_HDMI = "QEMU's raspi4b maps nothing at 0x7ef0xxxx, the Pi 4's HDMI blocks; "
# 8250 divisor = 2 * clock / (16 * baud) (8250_bcm2835aux doubles the clock: the mini UART
# oversamples 8 times): 16 at 115200 baud, 192 at 9600.
UART_CLOCK = 14_745_600
RASPI4B = (
    Concession(
        "/soc/clock@7ef00000",
        UNMAPPED_HDMI + "the built-in clk-bcm2711-dvp reads its gate at 'Disabling unused "
        "clocks' and the abort kills init",
    ),
    Concession(
        "/soc/interrupt-controller@7ef00100",
        UNMAPPED_HDMI + "brcmstb_l2_intc_of_init (built in) aborts at boot",
    ),
    Concession("/soc/i2c@7ef04500", UNMAPPED_HDMI + "HDMI0's DDC: brcmstb_i2c_probe aborts"),
    Concession("/soc/i2c@7ef09500", UNMAPPED_HDMI + "HDMI1's DDC: brcmstb_i2c_probe aborts"),
    Concession(
        "/soc/mmc@7e300000",
        "QEMU puts -drive if=sd on this controller (the Arasan SDHCI, Wi-Fi's on a real Pi 4; "
        "the Pi 4's card controller emmc2 gets an empty bus), and its Wi-Fi power sequence "
        "drives the firmware's GPIO expander, whose GET_GPIO_CONFIG mailbox tag QEMU does "
        "not answer: the controller would wait for it forever",
        prop="mmc-pwrseq",
    ),
    # The console's UART (ttyS1). QEMU 10's mini UART (hw/char/bcm2835_aux.c) has no divisor
    # latch: with LCR's DLAB set, the 8250 driver's divisor write to DLL goes out as a byte
    # and its write to DLM lands in the interrupt enable register. With the VPU clock of
    # QEMU's raspi4b the divisor's high byte has bit 1 set, which QEMU reads as "transmit
    # interrupt on"; the line then stays high (QEMU's transmitter is always empty) and the
    # driver, which never asked for that interrupt, never turns it off. Once the port is
    # opened, CPU 0 takes that interrupt without end, and the GIC, which delivers the lowest
    # number first among equal priorities, never delivers the SD card's (SPI 126, after the
    # mini UART's SPI 93, on the same CPU). A fixed clock, which the driver reads when the
    # node names none, keeps every divisor from 9600 baud up below 256: DLM is 0.
    Concession(
        "/soc/serial@7e215040",
        "the mini UART's clock; without it the driver reads `clock-frequency` below",
        prop="clocks",
    ),
    Concession(
        "/soc/serial@7e215040",
        "QEMU's mini UART has no divisor latch: the divisor's high byte lands in its interrupt "
        "enable register, and under QEMU's VPU clock turns the transmit interrupt on for "
        "good; that interrupt storm on CPU 0 starves the SD card's. At 14.7456 MHz every "
        "divisor from 9600 baud up is below 256, so that byte is 0",
        prop="clock-frequency",
        value=UART_CLOCK,
    ),
)
CONCESSIONS = {"raspi4b": RASPI4B}


def harness_copy(dtb: Path, dest: Path, concessions: tuple[Concession, ...]) -> Path:
    """A copy of DTB at DEST with the concessions made; the original is only read."""
    shutil.copyfile(dtb, dest)
    for c in concessions:
        subprocess.run(c.argv(dest), check=True, capture_output=True, text=True)
    return dest
