# Runs in a scratch copy of this directory before the base is built.
set -eu
mkdir -p rootfs/bin rootfs/etc rootfs/srv/data rootfs/tmp rootfs/root home/app
cp /bin/busybox rootfs/bin/busybox
ln -s busybox rootfs/bin/sh
ln -s busybox rootfs/bin/cat
# A directory reached through a relative and an absolute symlink (COPY into them must land
# in /srv/data).
ln -s srv/data rootfs/linkdir
ln -s /srv/data rootfs/abslink
echo kept > rootfs/srv/data/keep
chmod 1777 rootfs/tmp
chmod 0700 rootfs/root
echo app > home/app/.profile
