#!/bin/sh
# rootfs.sh DIR: lays out the image's root filesystem around the binary
# that DIR/usr/local/bin/cloister already holds. Used by `make image` (on
# this machine) and by the Dockerfile's build stage (with a registry), so
# that both images are the same:
#
#	/usr/local/bin/cloister   the static binary (root-owned, 0755)
#	/etc/passwd, /etc/group   root and cloister (65532): the user the image runs as
#	/etc/cloister/            mount point of the kit (read-only)
#	/var/lib/cloister/        the state volume (copied in owned by 65532, 0700)
set -eu
dir=${1:?usage: rootfs.sh DIR}
if [ ! -x "$dir/usr/local/bin/cloister" ]; then
	echo "rootfs.sh: $dir/usr/local/bin/cloister is missing: build the binary first" >&2
	exit 1
fi
umask 022
mkdir -p "$dir/etc/cloister" "$dir/var/lib/cloister"
chmod 0700 "$dir/var/lib/cloister"
cat >"$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
cloister:x:65532:65532:cloister:/var/lib/cloister:/sbin/nologin
PASSWD
cat >"$dir/etc/group" <<'GROUP'
root:x:0:
cloister:x:65532:
GROUP
