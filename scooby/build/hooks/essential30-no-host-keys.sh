#!/bin/sh
# openssh-server's postinst generates the SSH host keys (RSA 3072, ECDSA, Ed25519) unless the
# files exist; under qemu-user that is slow work that customize80-scrub.sh deletes anyway
# (every node makes its own at first boot). Empty stand-ins skip it; the scrub removes them.
set -eu
root="$1"
mkdir -p "$root/etc/ssh"
for type in rsa ecdsa ed25519; do
	: >"$root/etc/ssh/ssh_host_${type}_key"
done
