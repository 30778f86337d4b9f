#!/bin/sh
# Make the root's .pyc files unchecked hash-based ones (PEP 552): flags word 3 -> 1 in each
# header, nothing else. The build compiles with SOURCE_DATE_EPOCH set, so py_compile writes
# checked hash-based files (reproducible): at every import Python then reads the module's .py
# as well and hashes it to validate the .pyc. On an agent every such read is NFS from the
# master: cloud-init's start-up alone imports hundreds of modules. Unchecked, the .pyc is
# used as it is; the hash stays in it. The sources and the compiled code are the build's
# own and change together: a package upgrade on a node writes new .pyc files
# (its py3compile), which Python checks again as usual.
set -eu
root="$1"
python3 - "$root" <<'PY'
import os
import sys

root = sys.argv[1]
flipped = 0
for top in ("usr/lib", "usr/local/lib"):
    for folder, _dirs, files in os.walk(os.path.join(root, top)):
        if os.path.basename(folder) != "__pycache__":
            continue
        for name in files:
            if not name.endswith(".pyc"):
                continue
            path = os.path.join(folder, name)
            with open(path, "r+b") as f:
                header = f.read(8)
                if len(header) == 8 and header[4:8] == b"\x03\x00\x00\x00":
                    f.seek(4)
                    f.write(b"\x01\x00\x00\x00")
                    flipped += 1
print(f"customize76-pyc-unchecked: {flipped} .pyc files made unchecked hash-based")
PY
