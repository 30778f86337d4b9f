"""Where things live on the master and in the image: the contract between render and build.

The first three are the original's paths; its documented agent-reset recipe relies on them.
"""

from __future__ import annotations

import hashlib

AGENT_MOUNTS = "/mnt/scooby/agents"  # merged OverlayFS root of each agent, NFS-exported
# How an agent's client caches its NFS root (its cmdline.txt and fstab say the same, so the
# boot's remount changes nothing). Only that agent writes its root while it runs: its export
# names its address alone, a lower layer never changes under a mounted overlay
# (scooby-apply), and `scooby-agent reset` wants it powered off. So it need not ask the
# master at each open() whether a file changed (nocto; nfs(5) keeps it for data that
# changes on the server only occasionally), nor re-ask every 3-60 s (the ac*min/max
# defaults): 10 minutes. Its own writes keep its cache right, and close() still writes back.
# Measured on test-qemu's network boot: ~5,600 GETATTR calls before the banner became ~50, and
# the banner came ~6 s (9%) sooner (docs/nodes.md).
AGENT_ROOT_NFS_CACHE = "nocto,acregmin=600,acregmax=600,acdirmin=600,acdirmax=600"
# Every node's system locale: in the cloud-init seeds (`locale:`) and in /etc/default/locale
# alike, so cloud-init finds it set and runs neither locale-gen nor update-locale (a Perl
# script: 4.0 s of an agent's first boot under QEMU, 2.4 s of the master's). C.UTF-8 is
# built into glibc: nothing to generate.
LOCALE = "C.UTF-8"
AGENT_UPPERS = "/var/lib/scooby/agents"  # each agent's writable upper dir
AGENT_WORKDIRS = "/var/lib/scooby/overlay"  # each agent's OverlayFS work dir

AGENT_LAYERS = (
    "/var/lib/scooby/layers"  # each agent's private read-only layer (render's agents/NAME)
)
# What every agent boots that only a new image changes: on the root slot, so that it comes
# with the slot (docs/day2.md, 4.1 "The rule for files"). An A/B deploy writes only the
# inactive root slot: were these on the data partition, a trial slot would have to change
# what the committed slot's agents boot, and a rollback could not give it back. Under /usr/lib
# because file-hierarchy(7) puts "static, private vendor data", binaries of any architecture
# included, there: it is the image's, no Debian package owns /usr/lib/scooby, and nothing
# writes it at run time (but scooby-k3s-install, in K3S_MODE=first-boot, which installs the
# master's own k3s into the slot too). Not /srv: "managed by the administrator, generally
# writable", the opposite of a file that only a new slot changes.
AGENT_SHARED = "/usr/lib/scooby/agent-shared"  # what every agent gets over the base (k3s, images)
AGENT_BASE_IMAGE = "/usr/lib/scooby/agent-base.squashfs"  # the agents' root: squashfs, read-only
AGENT_BASE = "/usr/lib/scooby/agent-base"  # where that image is mounted: the lowest overlay layer
# In the agent base: the files cloud-init's first process reads as it starts (its modules'
# .pyc and extension modules, in import order), listed at the build by that very import
# (finish-agent.sh). scooby-readahead.service reads them on an agent, many at once, while
# that process is still starting: each of its reads is then a page already in memory, not
# one more round trip to the master's NFS server.
AGENT_READAHEAD = "/usr/lib/scooby/cloud-init-readahead.list"
TFTP_ROOT = "/srv/tftp"  # bootcode.bin at the top, one folder per PXE ID
TFTP_BOOT = "/srv/tftp/.boot"  # the agent base's boot files, which the PXE folders link to
RANCHER_DEVICE = "/dev/disk/scooby-rancher"  # agents: udev's link to the /var/lib/rancher disk
HTTP_ROOT = "/srv/scooby/seed"  # NAME/{user-data,meta-data}: each agent's cloud-init seed
RELEASE_FILE = "/etc/scooby/release"  # KEY=VALUE lines, written by build; see below

# /etc/scooby/release keys: SCOOBY_VERSION, BASE (debian|raspios), K3S_VERSION,
# K3S_MODE (embedded: binary and air-gap images in the image | first-boot: the master installs
# the pinned, checksum-verified release at first boot | none: no K3S), CONFIG_DIGEST.
# The K3S_MODE values, spelled here only:
EMBEDDED, FIRST_BOOT, NO_K3S = "embedded", "first-boot", "none"
K3S_MODES = (EMBEDDED, FIRST_BOOT, NO_K3S)
K3S_BINARY = "/usr/local/bin/k3s"  # on the master, and under AGENT_SHARED for the agents
K3S_AIRGAP_DIR = "/var/lib/rancher/k3s/agent/images"  # air-gap images (local disk, not NFS)
K3S_AIRGAP_SHARED = "/usr/local/share/scooby/k3s-airgap-images-arm64.tar.zst"  # under AGENT_SHARED

# Boot files: in the master's FAT partition and in TFTP_BOOT for the agents, with these names
# (config.txt refers to them): firmware (bootcode.bin, start*.elf, fixup*.dat), DTBs, overlays/.
KERNEL = "vmlinuz"
INITRD = "initrd.img"

# The master image (docs/day2.md, 4.1): MBR; p1 the FAT boot partition, p2 root slot A,
# p3 root slot B (same size, never written by the build: a hole in the image file), p4 the
# data partition, last on the card so that it is the one first boot grows.
BOOT_PARTITION = 1
ROOT_PARTITION = 2
SLOT_B_PARTITION = 3
DATA_PARTITION = 4
# The partition layout's name, in the deploy record's `release`: a master flashed with an
# earlier layout (p1 boot, p2 root; no data partition) differs here, so `scooby deploy` and
# scooby-update plan a new image for it instead of a live change that would make its fstab
# mount a partition it does not have.
IMAGE_LAYOUT = "boot,root-a,root-b,data"
BOOT_LABEL = "SCOOBYBOOT"
ROOT_LABEL = "scooby-root"
DATA_LABEL = "scooby-data"
# All the master's state lives on the data partition, so that no new root slot overwrites
# it: mounted here, and bind-mounted over the paths the rest of Scooby (and the original's
# documentation) uses. (on-master path, its folder on the data partition)
DATA_MOUNT = "/var/lib/scooby-data"
DATA_BINDS = (
    ("/var/lib/rancher", "rancher"),  # K3S: datastore, certificates, node passwords
    ("/var/lib/scooby", "scooby"),  # agents' uppers and layers, the join token, the deploy record
)
DATA_SSH = f"{DATA_MOUNT}/ssh"  # the master's SSH host keys (sshd's HostKey lines)
DATA_MACHINE_ID = f"{DATA_MOUNT}/machine-id"  # the master's machine-id, kept at first boot
HTTP_PORT = 58087  # the original's cloud-init port


def disk_id(hostname: str) -> str:
    """The MBR disk identifier: fixed per cluster so builds are reproducible."""
    return hashlib.sha256(f"scooby:{hostname}".encode()).hexdigest()[:8]


def partuuid(hostname: str, partition: int) -> str:
    return f"{disk_id(hostname)}-{partition:02d}"


# Nodes (first boot, K3S join, SSH): paths the master's and agents' units agree on.
FIRSTBOOT_DONE = "/var/lib/scooby/firstboot.done"  # the master's first boot has run
AUTHORIZED_KEYS = "/etc/scooby/authorized_keys"  # LC_SSH_AUTH_KEY; empty: sshd never starts
# The agent join token: made on the master at first boot (never at build time), kept here
# (mode 0600) for `k3s server --agent-token-file`, and copied into each agent's private layer
# (AGENT_LAYERS/NAME + K3S_AGENT_TOKEN, mode 0600), which only that agent's NFS export shows.
K3S_AGENT_TOKEN_MASTER = "/var/lib/scooby/secrets/k3s-agent-token"
K3S_AGENT_TOKEN = "/etc/rancher/k3s/agent-token"  # on each agent: its k3s `token-file`
K3S_API_PORT = 6443
AGENT_DEVICE = "eth0"  # an agent's built-in Ethernet (cmdline net.ifnames=0 keeps the name)
SCOOBY_AGENT = "/usr/local/sbin/scooby-agent"  # on the master: list, status, reset, remount
SCOOBY_K3S_TOKEN = "/usr/local/sbin/scooby-k3s-token"  # puts the join token in each agent's layer

# Day two (`scooby deploy`, docs/day2.md): the record of every file Scooby put on the master
# (sha256, mode), its agents and its release; written by the build, rewritten by each deploy.
DEPLOY_RECORD = "/var/lib/scooby/deploy/record.json"
# The same record as the build wrote it, in the root slot itself: it comes and goes with the
# slot, so when a slot is committed or rolled back to (scooby-slot), the deploy record takes
# from it the release and the files that live on the root slot (not those on the data
# partition, which a live deploy changes).
SLOT_RECORD = "/etc/scooby/record.json"
# What the last deploy replaced (files/<path>) and the record before it (record.json):
# `scooby deploy --rollback` returns there.
DEPLOY_PREVIOUS = "/var/lib/scooby/deploy/previous"
# A/B on the Debian base (docs/day2.md, 4.3): the slot state on the data partition
# (COMMITTED, TRIAL, TRIES, VERIFIED, LAST), read and updated by the initramfs
# (templates/base/initramfs-tools/scripts/local-top/scooby-slot) and by SCOOBY_SLOT; what
# the initramfs chose for this boot (BOOTED, TRIAL), and on a trial boot a marker file the
# health check's units are conditioned on.
SLOT_STATE = f"{DATA_MOUNT}/slots"
SLOT_RUN = "/run/scooby/slot"
SLOT_TRIAL_MARK = "/run/scooby/trial"
SCOOBY_SLOT = "/usr/local/sbin/scooby-slot"
# Which root file system a slot holds: `<slot>:<sha256>`, written into a slot by
# `scooby-slot write` once it verified (a slot as flashed has none: "flashed"). The agents'
# lower layers (AGENT_BASE_IMAGE, AGENT_SHARED) are files of that file system, so this names
# the base each agent's upper dir is made on (docs/day2.md, 4.5).
SLOT_ID = "/etc/scooby/slot-id"
# Per agent, the SLOT_ID its upper dir was made on (AGENT_BASE_STAMPS/NAME), and the one upper
# generation kept when a new base reset it (AGENT_RESETS/NAME/{upper,work,base}).
AGENT_BASE_STAMPS = "/var/lib/scooby/agents.base"
AGENT_RESETS = "/var/lib/scooby/agents.reset"
SLOT_DEADLINE_MIN = 10  # a trial not committed this many minutes after boot reboots
SCOOBY_APPLY = "/usr/local/sbin/scooby-apply"  # the master's half of a live deploy
SCOOBY_UPDATE = "/usr/local/sbin/scooby-update"  # the pull side: a release bundle, on the master
# A release that needs a reboot (`scooby deploy --bundle DIR --root`): the bundle's member
# after record.json that names its root slot (file, bytes, sha256) and boot files; and,
# while its slot is on trial, the bundle kept on the data partition for the live part that
# follows the commit (scooby-update --pending, scooby-update-pending.service).
BUNDLE_ROOT_MANIFEST = "root.json"
DEPLOY_PENDING = "/var/lib/scooby/deploy/pending"
# scooby-update's downloads (a release's root is hundreds of MB, and a Pi's /tmp is in RAM):
# a folder `scooby-update.*` at the top of the data partition, outside the deploy record's
# folder, which a refused pull leaves exactly as it was. One run at a time: each holds a lock
# (flock) on this folder itself; under it, what a killed run left is removed first.
UPDATE_WORK = DATA_MOUNT
# A deploy's on-master path prefix -> the action that makes a running master pick the change
# up ("": read when used). A path no prefix matches needs a reboot (A/B). The first match
# wins. `scooby deploy` (scooby.deploy.plan) and scooby-update on the master plan with it.
DEPLOY_LIVE: tuple[tuple[str, str], ...] = (
    ("/etc/dnsmasq.d/", "dnsmasq"),  # dhcp-host lines are read only at start: restart
    ("/etc/hosts", "dnsmasq"),  # dnsmasq answers from /etc/hosts
    ("/etc/exports.d/", "exportfs"),
    ("/etc/fstab", "daemon-reload"),  # the agents' overlay mounts are fstab lines
    # Its ordering lines name each agent's mount unit; nothing else in it changes with agents.
    ("/etc/systemd/system/scooby-k3s-token.service", "daemon-reload"),
    ("/etc/lighttpd/", "lighttpd"),
    ("/etc/iptables/", "iptables"),
    ("/etc/sysctl.d/", "sysctl"),
    ("/etc/udev/rules.d/", "udev"),
    ("/etc/rancher/k3s/", "k3s"),
    ("/etc/scooby/authorized_keys", ""),  # sshd reads it at each login
    (f"{TFTP_ROOT}/", ""),
    (f"{HTTP_ROOT}/", ""),
    (f"{AGENT_LAYERS}/", ""),  # an agent reads its layer through its overlay
    ("/var/lib/rancher/k3s/server/manifests/", ""),  # K3S watches the folder
    ("/usr/local/sbin/", ""),
)
# The order scooby-apply runs the actions in.
DEPLOY_ACTIONS = ("daemon-reload", "dnsmasq", "exportfs", "lighttpd", "iptables", "sysctl",
                  "udev", "k3s")  # fmt: skip


def instance_id(name: str, *parts: str) -> str:
    """A cloud-init instance-id that changes when what the seed sets changes (re-runs it)."""
    digest = hashlib.sha256("\0".join((name, *parts)).encode()).hexdigest()[:12]
    return f"scooby-{name}-{digest}"


# K3S on the nodes (docs/k3s.md).
K3S_TLS = "/var/lib/rancher/k3s/server/tls"  # the cluster CA, made before K3S first starts
K3S_MODE_FILE = "/etc/scooby/k3s-mode"  # in the agents' shared layer: embedded|first-boot|none
# An agent's kubelet state, pod logs and CNI state: bind-mounted from its local disk.
# And K3S's node password (/etc/rancher/node/password, which the server checks each time the
# agent joins), so that it outlives a reset of the agent's upper dir (docs/day2.md, 4.5).
AGENT_LOCAL_BINDS = (
    ("/var/lib/kubelet", "/var/lib/rancher/scooby-local/kubelet"),
    ("/var/log/pods", "/var/lib/rancher/scooby-local/pods"),
    ("/var/lib/cni", "/var/lib/rancher/scooby-local/cni"),
    ("/etc/rancher/node", "/var/lib/rancher/scooby-local/node"),
)
AGENT_LOCAL_MOUNTS = ("/var/lib/rancher", *(target for target, _ in AGENT_LOCAL_BINDS))
# Bounded waits, seconds: the clock before K3S starts, the master's internal device, and an
# agent's wait for a first-boot install of K3S (then its unit fails and is started again).
TIME_WAIT_MASTER = 180
TIME_WAIT_AGENT = 120
INTERNAL_WAIT = 300
K3S_WAIT = 600
