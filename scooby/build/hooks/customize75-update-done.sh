#!/bin/sh
# Mark /etc and /var as up to date with /usr, as systemd-update-done does on a booted system.
# Without /etc/.updated and /var/.updated, systemd's ConditionNeedsUpdate= holds, and every
# first boot runs ldconfig.service and systemd-journal-catalog-update.service before
# sysinit.target, rebuilding what dpkg's triggers already built here: on the master's first
# boot, and on every agent's first boot (again after `scooby-agent reset`, whose upper dir
# starts empty), about 7 s of an agent's boot under QEMU. The build sets every file time to
# SOURCE_DATE_EPOCH, so these are never older than /usr; an upgrade of /usr on the node makes
# /usr newer, and systemd runs the updates again, as it should.
set -eu
root="$1"
for dir in etc var; do
	printf '%s\n' \
		'# Written by the Scooby build, as systemd-update-done writes it: it holds the time this' \
		'# directory was last brought up to date with /usr. See systemd-update-done.service(8).' \
		>"$root/$dir/.updated"
done
