#!/bin/sh
# build.sh IMAGE (make postgres-image): builds a PostgreSQL 15 image for the
# coordinator's store without a registry: a Debian bookworm root filesystem
# made here by debootstrap (minbase, with Debian's postgresql-15), trimmed,
# with entrypoint.sh, and imported with docker import. Nothing is pulled
# from a container registry; Debian's packages come from $DEBIAN_MIRROR
# (default http://deb.debian.org/debian).
#
# It keeps the root filesystem's tarball in $OUT (out/postgres-image) and
# reuses it while build.sh and entrypoint.sh are unchanged: debootstrap
# takes one to two minutes and about 100 MB of downloads the first time.
#
# Needs root (debootstrap chroots) and debootstrap (apt-get install
# debootstrap).
set -eu
image=${1:?usage: build.sh IMAGE}
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/../../out}/postgres-image
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "$(id -u)" != 0 ]; then
	echo "build.sh: debootstrap needs root: run make postgres-image as root (or with sudo)" >&2
	exit 1
fi
command -v debootstrap >/dev/null || {
	echo "build.sh: debootstrap is missing: apt-get install debootstrap" >&2
	exit 1
}

# The tarball is reused while the recipe is the same.
recipe=$(cat "$here/build.sh" "$here/entrypoint.sh" | sha256sum | cut -c1-16)
tarball=$out/rootfs-$recipe.tar
if [ ! -f "$tarball" ]; then
	mkdir -p "$out"
	root=$(mktemp -d "$out/root.XXXXXX")
	trap 'rm -rf "$root"' EXIT
	echo "build.sh: debootstrap bookworm (minbase, postgresql-15) from $mirror into $root"
	debootstrap --variant=minbase --include=postgresql-15 bookworm "$root" "$mirror" >"$out/debootstrap.log" 2>&1 || {
		tail -20 "$out/debootstrap.log" >&2
		echo "build.sh: debootstrap failed (log: $out/debootstrap.log)" >&2
		exit 1
	}
	# The cluster the package made at install time is not used: the
	# entrypoint makes one on the data volume at the first start.
	rm -rf "$root/var/lib/postgresql/15" "$root/etc/postgresql/15/main"
	# What a server does not need: downloaded packages, package lists,
	# documentation, translations.
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
		"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
	find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
	rm -rf "$root"/usr/share/i18n
	# The JIT (LLVM, 130 MB; the entrypoint runs with jit=off) and perl
	# (postgresql-common's cluster scripts, which the entrypoint does not
	# use: it runs initdb, pg_ctl and postgres itself).
	rm -rf "$root"/usr/lib/x86_64-linux-gnu/libLLVM-* "$root"/usr/lib/x86_64-linux-gnu/libz3.so* \
		"$root"/usr/lib/postgresql/15/lib/llvmjit* "$root"/usr/lib/postgresql/15/lib/bitcode \
		"$root"/usr/share/perl "$root"/usr/lib/x86_64-linux-gnu/perl "$root"/usr/lib/x86_64-linux-gnu/libperl.so* \
		"$root"/usr/bin/perl "$root"/usr/bin/perl5*
	install -m 0755 "$here/entrypoint.sh" "$root/usr/local/bin/cloister-postgres"
	install -d -o 100 -g 102 -m 0700 "$root/var/lib/postgresql/data"
	install -d -o 100 -g 102 -m 0775 "$root/run/postgresql"
	# The uid and gid the entrypoint and the volume rely on.
	grep -q '^postgres:x:100:102:' "$root/etc/passwd" || {
		echo "build.sh: the postgres user is not 100:102 in the root filesystem" >&2
		exit 1
	}
	rm -f "$out"/rootfs-*.tar # an older recipe's
	tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
	mv "$tarball.tmp" "$tarball"
fi
docker import \
	--change 'USER postgres' \
	--change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin PGDATA=/var/lib/postgresql/data LANG=C.UTF-8' \
	--change 'VOLUME /var/lib/postgresql/data' \
	--change 'EXPOSE 5432' \
	--change 'ENTRYPOINT ["/usr/local/bin/cloister-postgres"]' \
	--message "PostgreSQL 15 from Debian bookworm for the cloister coordinator's store (deploy/postgres/build.sh)" \
	"$tarball" "$image" >/dev/null
docker image inspect -f '{{.Size}}' "$image" | awk -v i="$image" '{ printf "build.sh: image %s: %.1f MB\n", i, $1/1e6 }'
