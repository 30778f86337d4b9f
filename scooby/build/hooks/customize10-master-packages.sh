#!/bin/sh
# master-base: install the master's packages (SCOOBY_PACKAGES) inside the unpacked agent base.
# update-initramfs stays quiet: the agent base's initramfs already has every module we need.
set -eu
root="$1"
native="$(dirname "$0")/native-tools.sh"
# the installs run the root's shells, text tools, Perl and dpkg-deb natively (native-tools.sh)
sh "$native" on "$root"
chroot "$root" dpkg-divert --local --rename --add /usr/sbin/update-initramfs
printf '#!/bin/sh\nexit 0\n' >"$root/usr/sbin/update-initramfs"
chmod 0755 "$root/usr/sbin/update-initramfs"
# shellcheck disable=SC2086 # a list of package names
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install --yes \
	--no-install-recommends -o Dpkg::Use-Pty=0 $SCOOBY_PACKAGES
sh "$native" off "$root"
rm -f "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs
