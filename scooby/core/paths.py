"""Where Scooby's own files are: schemas/, templates/ and the list of what the build machine
needs (scripts/packages.txt) beside the package (symlinks in a checkout, copies in a wheel)."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = PACKAGE / "schemas"
TEMPLATES_DIR = PACKAGE / "templates"

# In the user's repository (relative to --repo):
IMAGE = "images/scooby.img"  # what build writes, test-qemu boots and release publishes
PACKAGES_LIST = PACKAGE / "packages.txt"
