#!/bin/sh
# From here to essential05: the essential packages' install finds this machine's dpkg-deb and
# text tools first in PATH (native-tools.sh early says why and how).
exec sh "$(dirname "$0")/native-tools.sh" early "$1"
