#!/bin/sh
# The packages are installed: the root's own arm64 tools again (native-tools.sh), before any
# customize hook reads the root or mmdebstrap packs it.
exec sh "$(dirname "$0")/native-tools.sh" off "$1"
