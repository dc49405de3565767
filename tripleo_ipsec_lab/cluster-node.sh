#!/bin/sh
# PID 1 of one controller's corosync + pacemaker in the lab guest.
#
#   cluster-node.sh NODE STATE PLUTO_RUNDIR LOGS
#
# The lab starts it in the controller's network namespace under
# "unshare -m -u -p -f --mount-proc": corosync and pacemaker keep their
# state in /run, /dev/shm and /var/lib, which every namespace of the guest
# shares, so each node gets its own here (STATE holds its etc-corosync,
# var-lib-corosync, var-lib-pacemaker and log directories), its own host
# name, and its own PIDs.  The node's pluto (its control socket under
# PLUTO_RUNDIR) appears at /run/pluto, where the VIP's OCF agent looks for
# it by default; corosync's and pacemaker's logs go to LOGS (in the lab's
# work directory).  Every step's failure ends the node with its message.
set -eu
NODE=$1 STATE=$2 PLUTO_RUNDIR=$3 LOGS=$4
fail() { echo "cluster-node $NODE: $*" >&2; exit 1; }

hostname "$NODE"
# the node's pluto, before a fresh /run hides the guest's
mkdir -p "$STATE/pluto"
mount --bind "$PLUTO_RUNDIR" "$STATE/pluto" || fail "bind $PLUTO_RUNDIR"
mount -t tmpfs -o mode=755 tmpfs /run || fail "tmpfs /run"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "tmpfs /dev/shm"
mkdir -p /run/pluto /run/crm
mount --bind "$STATE/pluto" /run/pluto || fail "bind /run/pluto"
for pair in "$STATE/etc-corosync:/etc/corosync" \
            "$STATE/var-lib-corosync:/var/lib/corosync" \
            "$STATE/var-lib-pacemaker:/var/lib/pacemaker" \
            "$LOGS/pacemaker:/var/log/pacemaker" \
            "$LOGS/corosync:/var/log/corosync"; do
    mkdir -p "${pair%%:*}" "${pair#*:}"
    mount --bind "${pair%%:*}" "${pair#*:}" || fail "bind ${pair#*:}"
done
chown -R hacluster:haclient /var/lib/pacemaker /var/log/pacemaker

export PCMK_logfile=/var/log/pacemaker/pacemaker.log PCMK_logfacility=none
corosync -f &
i=0
# until it answers (its last complaint is kept beside its log)
until corosync-cfgtool -s >/dev/null 2>"$LOGS/cfgtool.err"; do
    i=$((i + 1))
    [ "$i" -lt 600 ] || fail "corosync did not start (see $LOGS)"
    [ -d "/proc/$!" ] || fail "corosync exited (see $LOGS)"
    sleep 0.1
done
pacemakerd &
# PID 1 of the namespace: reap whatever exits, until the lab kills it
while :; do
    wait || :
    sleep 1
done
