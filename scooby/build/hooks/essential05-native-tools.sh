#!/bin/sh
# From here to customize05: the root's shells, text tools, Perl and dpkg-deb run natively
# (native-tools.sh says why and how). Not sooner: the essential packages' install unpacks
# those very files again, and a file under a mount can't be replaced.
exec sh "$(dirname "$0")/native-tools.sh" on "$1"
