#!/bin/bash
# scooby-native-python: the root's @PYTHON@ while its packages install (native-tools.sh puts
# this in front of it, diverted, and takes it away again before anything reads the root).
# @PYTHON@-minimal's and @PYTHON@'s postinsts byte-compile the standard library with
# `@PYTHON@ -E -S /usr/lib/@PYTHON@/py_compile.py FILES`. That one call runs this machine's
# build of the very same Debian version (scooby/build/nativepy.py), which writes the same .pyc
# bytes in a fraction of the time. Every other call, or any other version, runs the root's
# own interpreter under the name it was called by, as without this.
native=/usr/lib/scooby-native/.python
if [ "${1-} ${2-} ${3-}" = "-E -S /usr/lib/@PYTHON@/py_compile.py" ] &&
	[ -f "$native/version" ] &&
	[ "$(dpkg-query -W -f='${Version}' @PYTHON@-minimal)" = "$(cat "$native/version")" ]; then
	# a failure is retried emulated: compiling twice writes the same files
	if "$native/ld-linux-x86-64.so.2" --library-path "$native" "$native/python" "$@"; then
		echo "native-python.sh: $(($# - 3)) modules compiled by this machine's @PYTHON@" >&2
		exit 0
	fi
fi
exec -a "$0" /usr/bin/@PYTHON@.distrib "$@"
