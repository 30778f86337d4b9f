#!/usr/bin/env bash
# ./scripts/test.sh [pytest arguments...] -> every check and test, as CI runs them:
# `nox -s lint tests` from the project's .venv/ (set up first by scripts/setup.sh). As root:
# the tests build an image, start daemons in network namespaces and boot QEMU; as a user,
# those tests are skipped, each with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/nox -s lint tests -- "$@"
