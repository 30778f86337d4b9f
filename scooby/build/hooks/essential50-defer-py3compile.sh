#!/bin/sh
# Each Python package's postinst runs py3compile for its own modules: two Python start-ups per
# package (py3compile and its compiler), each about a second of CPU under qemu-user. While
# packages install, a stand-in records the calls; deferred-py3compile.sh makes the
# same .pyc files in one py3compile run over dist-packages at the end.
set -eu
root="$1"
chroot "$root" dpkg-divert --local --rename --add /usr/bin/py3compile
printf '#!/bin/sh\n# scooby build: deferred, see deferred-py3compile.sh\necho "$*" >>/var/cache/scooby-py3compile\n' \
	>"$root/usr/bin/py3compile"
chmod 0755 "$root/usr/bin/py3compile"
