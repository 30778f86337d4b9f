"""What the Raspberry Pi firmware loads, model by model, from a boot folder: the build's check.

The rules are the Raspberry Pi documentation's, config.txt
(https://www.raspberrypi.com/documentation/computers/config_txt.html): "Conditional
filters", and the boot options `kernel`, `arm_64bit`, `initramfs`, `auto_initramfs`,
`cmdline`, `device_tree`, `os_prefix`, `upstream_kernel`, `start_file`/`fixup_file`,
`start_x`, `start_debug`, `gpu_mem`, `dtoverlay`/`overlay_prefix` and `include`; and
raspberrypi/linux issue #3237 (how upstream_kernel picks the mainline tree names and the
upstream/ prefix):

- config.txt is read top to bottom; a `[filter]` line starts a section that applies only
  when the filter matches the board; a model filter replaces the previous one, `[all]`
  resets them, `[none]` matches nothing. Filters a build cannot know (`[tryboot]`,
  `[HDMI:1]`, `[gpioN=...]`, `[EDID=...]`, a serial number) count as not matching, as on a
  normal boot.
- with `upstream_kernel=1` the firmware prefers the mainline tree name (bcm2837-rpi-3-b.dtb
  rather than bcm2710-rpi-3-b.dtb, bcm2711-rpi-cm4-io.dtb rather than bcm2711-rpi-cm4.dtb)
  and falls back to the Raspberry Pi name; unless `os_prefix` is set it tries the prefix
  `upstream/`, dropped when the kernel or tree isn't there.
- Pi 3 boot ROMs read bootcode.bin (over the network: from the TFTP root), then
  start.elf/fixup.dat; Pi 4 EEPROMs read start4.elf/fixup4.dat.

`view(folder, model)` lists every file the firmware would read for that model (purpose,
name, found); `check()` is the build's: a missing file fails it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Model:
    name: str  # as the README's matrix says it
    filters: frozenset[str]  # the model filters that match it ([pi3], [pi3+], ...)
    family: int  # 3 or 4: which firmware files and default kernel names
    dtb: str  # the Raspberry Pi kernel's tree name
    upstream_dtb: str  # the mainline tree name, preferred with upstream_kernel=1


MODELS = {
    m.name: m
    for m in (
        Model("Pi 3B", frozenset({"pi3"}), 3, "bcm2710-rpi-3-b.dtb", "bcm2837-rpi-3-b.dtb"),
        Model(
            "Pi 3B+",
            frozenset({"pi3", "pi3+"}),
            3,
            "bcm2710-rpi-3-b-plus.dtb",
            "bcm2837-rpi-3-b-plus.dtb",
        ),
        Model("Pi 4B", frozenset({"pi4"}), 4, "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-4-b.dtb"),
        Model(
            "Pi 400", frozenset({"pi4", "pi400"}), 4, "bcm2711-rpi-400.dtb", "bcm2711-rpi-400.dtb"
        ),
        Model("CM4", frozenset({"pi4", "cm4"}), 4, "bcm2711-rpi-cm4.dtb", "bcm2711-rpi-cm4-io.dtb"),
    )
}
MASTERS = ("Pi 3B", "Pi 3B+", "Pi 4B", "Pi 400", "CM4")
AGENTS = ("Pi 3B", "Pi 3B+", "Pi 4B")
# Every model filter the firmware knows: any other bracketed word is a non-model filter.
MODEL_FILTERS = {
    "pi0",
    "pi0w",
    "pi1",
    "pi2",
    "pi3",
    "pi3+",
    "pi4",
    "pi400",
    "cm4",
    "cm4s",
    "pi5",
    "pi500",
    "cm5",
    "pi02",
    "board-type",
}


@dataclass
class Loaded:
    """One file the firmware reads: why, its name in the folder, whether it is there."""

    purpose: str
    name: str
    found: bool
    required: bool = True


@dataclass
class View:
    model: str
    settings: dict[str, str] = field(default_factory=dict)
    overlays: list[str] = field(default_factory=list)
    files: list[Loaded] = field(default_factory=list)

    @property
    def missing(self) -> list[Loaded]:
        return [f for f in self.files if f.required and not f.found]

    def name(self, purpose: str) -> str | None:
        return next((f.name for f in self.files if f.purpose == purpose), None)


def _matches(section: str, model: Model) -> bool | None:
    """True/False for a filter line we understand, None for [all]."""
    word = section.strip().lower()
    if word == "all":
        return None
    if word == "none":
        return False
    if word in MODEL_FILTERS:
        return word in model.filters
    return False  # tryboot, HDMI, EDID, gpio, serial number: not on a normal boot


def settings(folder: Path, model: Model, name: str = "config.txt", depth: int = 0) -> View:
    """The settings that apply to `model`: last one wins, as the firmware reads them."""
    view = View(model.name)
    _read(folder, model, name, view, depth)
    return view


def _read(folder: Path, model: Model, name: str, view: View, depth: int) -> None:
    path = folder / name
    view.files.append(Loaded("config", name, path.is_file(), required=depth == 0))
    if not path.is_file() or depth > 4:
        return
    active: dict[str, bool] = {}  # filter kind -> matches; model filters replace each other
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            result = _matches(line[1:-1], model)
            if result is None:
                active = {}
            else:
                kind = "model" if line[1:-1].strip().lower() in MODEL_FILTERS else line
                active[kind] = result
            continue
        if not all(active.values()):
            continue
        if line.startswith("include "):
            _read(folder, model, line.split(None, 1)[1].strip(), view, depth + 1)
        elif line.startswith("initramfs "):
            view.settings["initramfs"] = line.split(None, 1)[1].split()[0]
        elif "=" in line:
            key, value = (s.strip() for s in line.split("=", 1))
            if key == "dtoverlay":
                view.overlays.append(value.split(",", 1)[0])
            else:
                view.settings[key] = value


def view(folder: Path, model_name: str) -> View:
    """Every file the firmware reads from `folder` for `model_name`, in order."""
    model = MODELS[model_name]
    v = settings(folder, model)
    s, files = v.settings, v.files
    if model.family == 3:
        files.append(Loaded("bootcode", "bootcode.bin", (folder / "bootcode.bin").is_file()))
    for purpose, name in zip(("start", "fixup"), _firmware(model, s), strict=True):
        files.append(Loaded(purpose, name, (folder / name).is_file()))
    kernel, dtb = _kernel(model, s), _dtb(model, s)
    prefix = _prefix(folder, s, kernel, dtb)
    upstream = s.get("upstream_kernel", "0") not in ("0", "")
    fallback = upstream and "device_tree" not in s and not (folder / prefix / dtb).is_file()
    if fallback and (folder / prefix / model.dtb).is_file():
        dtb = model.dtb  # the firmware falls back to the downstream tree (and its overlay)
    named = [("kernel", kernel), ("dtb", dtb), ("cmdline", s.get("cmdline", "cmdline.txt"))]
    if s.get("initramfs"):
        named.append(("initramfs", s["initramfs"]))
    for purpose, name in named:
        files.append(Loaded(purpose, prefix + name, (folder / prefix / name).is_file()))
    if not s.get("initramfs") and s.get("auto_initramfs", "0") not in ("0", ""):
        # kernel8.img -> initramfs8, kernel_2712.img -> initramfs_2712; loaded if it is there
        name = re.sub(r"^kernel(.*)\.img$", r"initramfs\1", kernel)
        if name != kernel:
            found = (folder / prefix / name).is_file()
            files.append(Loaded("initramfs", prefix + name, found, required=False))
    overlays = s.get("overlay_prefix", "overlays/")
    for name in v.overlays:
        dtbo = f"{prefix}{overlays}{name}.dtbo"
        files.append(Loaded(f"overlay {name}", dtbo, (folder / dtbo).is_file()))
    return v


def _kernel(model: Model, s: dict[str, str]) -> str:
    if s.get("kernel"):
        return s["kernel"]
    if s.get("arm_64bit", "0") not in ("0", ""):
        return "kernel8.img"
    return "kernel7.img" if model.family == 3 else "kernel7l.img"


def _dtb(model: Model, s: dict[str, str]) -> str:
    upstream = s.get("upstream_kernel", "0") not in ("0", "")
    return s.get("device_tree") or (model.upstream_dtb if upstream else model.dtb)


def _prefix(folder: Path, s: dict[str, str], kernel: str, dtb: str) -> str:
    """os_prefix; with upstream_kernel=1 and none set, upstream/ when its kernel and tree
    are there (the firmware drops the prefix otherwise)."""
    if "os_prefix" in s:
        return s["os_prefix"]
    if s.get("upstream_kernel", "0") in ("0", ""):
        return ""
    up = folder / "upstream"
    return "upstream/" if (up / kernel).is_file() and (up / dtb).is_file() else ""


def _firmware(model: Model, s: dict[str, str]) -> tuple[str, str]:
    """start*.elf and fixup*.dat: start_file/fixup_file, else start_x/start_debug/gpu_mem."""
    four = "4" if model.family == 4 else ""
    variant = ""
    if s.get("start_x", "0") != "0":
        variant = "x"
    if s.get("start_debug", "0") != "0":
        variant = "db"
    if s.get("gpu_mem", "").isdigit() and int(s["gpu_mem"]) <= 16:
        variant = "cd"
    sep = "" if four or not variant else "_"
    start = s.get("start_file") or f"start{four}{sep}{variant}.elf"
    fixup = s.get("fixup_file") or f"fixup{four}{sep}{variant}.dat"
    return start, fixup


def check(boot: Path, tftp_root: Path, pxe_ids: list[str]) -> list[str]:
    """Problems (one line each) the firmware would hit: in the boot partition for every
    master model, and in every agent's TFTP folder for every agent model. Pi 3 boot ROMs
    fetch bootcode.bin from the TFTP root itself, then the rest from the serial folder."""
    problems = []
    for model in MASTERS:
        for f in view(boot, model).missing:
            problems.append(
                f"boot partition: a {model} master loads {f.name} ({f.purpose}): missing"
            )
    for pxe in pxe_ids:
        for model in AGENTS:
            for f in view(tftp_root / pxe, model).missing:
                where = tftp_root / pxe / f.name
                if f.purpose == "bootcode":
                    where = tftp_root / f.name
                    if where.is_file():
                        continue
                problems.append(f"{where}: a {model} agent loads {f.purpose} {f.name}: missing")
    return problems
