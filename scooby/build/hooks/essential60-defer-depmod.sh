#!/bin/sh
# The kernel's postinst runs depmod over its ~3,000 modules: about 23 s of emulated CPU while
# dpkg waits and the machine's second core idles. While packages install, a stand-in starts
# the real depmod in the background with the same arguments and returns at once (the next
# packages configure beside it); nothing the installs run needs the module index
# (update-initramfs is deferred too: essential10). customize90-finish-later.sh waits for it
# (deferred-depmod.sh), fails the build if it failed, and puts depmod back before the
# initramfs is made. The stand-in's calls take turns (flock): depmod writes fixed temporary
# names. A kmod that installs depmod elsewhere than /usr/sbin replaces the stand-in, and
# depmod then runs in the postinst as before.
set -eu
root="$1"
chroot "$root" dpkg-divert --local --rename --add /usr/sbin/depmod
cat >"$root/usr/sbin/depmod" <<'EOF'
#!/bin/sh
# scooby build: depmod in the background, see essential60-defer-depmod.sh
set -eu
jobs=/var/cache/scooby-depmod
mkdir -p "$jobs"
job=$(mktemp -d "$jobs/job.XXXXXX")
# kmod is one program for all its tools: it picks depmod by the name it is started by
ln -s /usr/sbin/depmod.distrib "$job/depmod"
printf '%s\n' "$*" >"$job/args"
echo "scooby build: depmod $* runs in the background"
(
	status=0
	flock "$jobs/lock" "$job/depmod" "$@" >"$job/log" 2>&1 || status=$?
	echo "$status" >"$job/status"
) </dev/null >/dev/null 2>&1 &
echo "$!" >"$job/pid"
EOF
chmod 0755 "$root/usr/sbin/depmod"
