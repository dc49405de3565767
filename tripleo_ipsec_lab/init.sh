#!/bin/sh
# PID 1 of the lab's User-Mode-Linux guest (see guest.py).
#
# The guest's root is the host's / through hostfs, read-only; a tmpfs
# overlay on top lets the guest write /etc, /run and /var without touching
# the host.  The lab's work directory (LAB_WORK, from the kernel command
# line) is mounted read-write at the same path, so a path means the same
# file on both sides.  Then the agent (agent.py) serves the host's requests
# from LAB_WORK/spool until it is told to power off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
MODDIR=/usr/lib/uml/modules/$(uname -r)
die() { echo "LAB-INIT-FAILED: $*"; echo o > /proc/sysrq-trigger; sleep 5; exit 1; }

mount -t proc proc /proc || die proc
mount -t tmpfs -o mode=755 tmpfs /tmp || die tmpfs
insmod "$MODDIR/kernel/fs/overlayfs/overlay.ko" 2>/dev/null
N=/tmp/ovl
mkdir -p $N/upper $N/work $N/root
mount -t overlay -o lowerdir=/,upperdir=$N/upper,workdir=$N/work overlay $N/root || die overlay
R=$N/root
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
ln -sf /proc/self/fd $R/dev/fd
mount -t tmpfs -o mode=755 tmpfs $R/run
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mkdir -p $R/usr/lib/modules && ln -sfn "$MODDIR" "$R/usr/lib/modules/$(uname -r)"
mkdir -p "$R$LAB_WORK"
mount -t hostfs -o "$LAB_WORK" hostfs "$R$LAB_WORK" || die "hostfs $LAB_WORK"
cd $R && mkdir -p oldroot && pivot_root . oldroot || die pivot_root
exec chroot . /bin/sh -c '
    umount -l /oldroot; rmdir /oldroot; hostname tripleo-ipsec-lab
    ip link set lo up
    exec /usr/bin/python3 "$LAB_AGENT" "$LAB_WORK/spool"' </dev/console >/dev/console 2>&1
