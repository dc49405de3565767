# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The lab's User-Mode-Linux guest, seen from the host.

This machine's kernel has no ESP; Debian's ``user-mode-linux`` kernel has.
The guest boots with the host's ``/`` as its read-only root (hostfs) and a
tmpfs overlay on top (``init.sh``), so every package installed on the host
is there and nothing is built.  It gets no network device at all: the
host talks to it through files in the work directory, which the guest
mounts at the same path (``agent.py``).  One process group holds the guest;
a watchdog kills it by pid when the lab's time is up, and ``close()``
leaves nothing running.

``python -m tripleo_ipsec_lab.guest WORK NETNS -- ARGV...`` runs ARGV in a
node of a running guest, passing stdin, stdout, stderr and the exit code
through: the lab's Ansible interpreter for each node is this.
"""

import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
UML = '/usr/bin/linux.uml'
PYTHON = '/usr/bin/python3'


def unavailable():
    """Why the lab cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return 'the lab needs root'
    if not os.path.exists(UML):
        return 'user-mode-linux is not installed (tools/install)'
    for tool in ('tcpdump', 'iperf3', 'pcs'):
        if not shutil.which(tool):
            return '%s is not installed (tools/install)' % tool
    return None


class GuestError(Exception):
    pass


class Result(object):

    def __init__(self, argv, data):
        self.argv = argv
        self.returncode = data.get('rc', 127)
        self.stdout = data.get('stdout', '')
        self.stderr = data.get('stderr', '')
        self.ms = data.get('ms', 0)

    def check(self):
        if self.returncode:
            raise GuestError('%s: rc %s: %s' % (
                ' '.join(self.argv), self.returncode,
                (self.stderr or self.stdout).strip()[-500:]))
        return self


class Spool(object):
    """The host's end of the agent's request files."""

    def __init__(self, work):
        self.dir = os.path.join(work, 'spool')
        self._ids = itertools.count()
        self._tag = uuid.uuid4().hex[:8]

    def request(self, req, timeout):
        rid = '%s-%d-%d' % (self._tag, os.getpid(), next(self._ids))
        path = os.path.join(self.dir, 'req', rid + '.json')
        with open(path + '.tmp', 'w') as f:
            json.dump(req, f)
        os.rename(path + '.tmp', path)
        answer = os.path.join(self.dir, 'res', rid + '.json')
        deadline = time.monotonic() + timeout
        while not os.path.exists(answer):
            if time.monotonic() > deadline:
                raise GuestError('the guest did not answer %s in %ds'
                                 % (req.get('argv') or req['op'], timeout))
            time.sleep(0.003)
        with open(answer) as f:
            data = json.load(f)
        os.unlink(answer)
        return data

    def run(self, argv, netns=None, stdin=None, stdin_file=None, timeout=120):
        data = self.request({'op': 'run', 'argv': list(argv), 'netns': netns,
                             'stdin': stdin, 'stdin_file': stdin_file,
                             'timeout': timeout}, timeout + 30)
        return Result(argv, data)


class Guest(object):
    """One UML guest: boot, run commands in it, close."""

    def __init__(self, work, memory='2048M', timeout=900, uml=UML):
        self.work = os.path.abspath(work)
        self.memory = memory
        self.timeout = timeout
        self.uml = uml
        self.proc = None
        self.boot_ms = None
        self.spool = Spool(self.work)
        self._watchdog = None

    # -- life cycle -------------------------------------------------------
    def boot(self, wait=120):
        for sub in ('spool/req', 'spool/res', 'spool/in', 'uml'):
            os.makedirs(os.path.join(self.work, sub), exist_ok=True)
        # the agent runs from the work directory: the guest hides the host's
        # /tmp (and a checkout there) under a tmpfs of its own
        agent = os.path.join(self.work, 'agent.py')
        shutil.copy(os.path.join(HERE, 'agent.py'), agent)
        ready = os.path.join(self.work, 'spool', 'ready.json')
        if os.path.exists(ready):
            os.unlink(ready)
        args = [self.uml, 'mem=%s' % self.memory, 'root=/dev/root',
                'rootfstype=hostfs', 'rootflags=/', 'ro',
                'init=%s' % os.path.join(HERE, 'init.sh'),
                'umid=tipsec-%s' % uuid.uuid4().hex[:8],
                'uml_dir=%s' % os.path.join(self.work, 'uml'),
                'con=null', 'con0=fd:0,fd:1', 'quiet',
                'LAB_WORK=%s' % self.work,
                'LAB_AGENT=%s' % agent]
        start = time.monotonic()
        with open(os.path.join(self.work, 'console.log'), 'ab') as log:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        with open(os.path.join(self.work, 'guest.pid'), 'w') as f:
            f.write('%d\n' % self.proc.pid)
        self._watchdog = threading.Timer(self.timeout, self.kill)
        self._watchdog.daemon = True
        self._watchdog.start()
        while not os.path.exists(ready):
            if self.proc.poll() is not None or \
                    time.monotonic() - start > wait:
                self.kill()
                raise GuestError('the lab guest did not boot; see %s'
                                 % os.path.join(self.work, 'console.log'))
            time.sleep(0.01)
        self.boot_ms = int((time.monotonic() - start) * 1000)
        return self

    def kill(self):
        """Kill the guest's process group by pid; nothing is left."""
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(2)
                break
            except subprocess.TimeoutExpired:
                pass
        self.proc.wait()

    def close(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.spool.request({'op': 'poweroff'}, 10)
                self.proc.wait(20)
            except (GuestError, subprocess.TimeoutExpired):
                pass
        self.kill()
        if self._watchdog:
            self._watchdog.cancel()
        try:
            os.unlink(os.path.join(self.work, 'guest.pid'))
        except FileNotFoundError:
            pass
        self.proc = None

    def __enter__(self):
        return self.boot()

    def __exit__(self, *exc):
        self.close()

    # -- commands ---------------------------------------------------------
    def run(self, argv, netns=None, stdin=None, timeout=120, check=True):
        result = self.spool.run(argv, netns, stdin=stdin, timeout=timeout)
        return result.check() if check else result

    def spawn(self, argv, netns=None):
        """Start ARGV in the background; returns its pid in the guest."""
        data = self.spool.request({'op': 'spawn', 'argv': list(argv),
                                   'netns': netns}, 60)
        if data.get('error'):
            raise GuestError('%s: %s' % (' '.join(argv), data['error']))
        return data['pid']

    def signal(self, pid, sig=signal.SIGTERM):
        self.spool.request({'op': 'signal', 'pid': pid, 'signal': int(sig)},
                           60)

    def wait(self, pid, timeout=60):
        return Result(['wait', str(pid)], self.spool.request(
            {'op': 'wait', 'pid': pid, 'timeout': timeout}, timeout + 30))

    def python_wrapper(self, netns, path, env=None):
        """Write an interpreter for Ansible that runs in node NETNS.

        ENV ({name: value}), when given, is set for it in the node: e.g.
        the node's DBUS_SYSTEM_BUS_ADDRESS (``certs.node_env``), so that
        getcert in the node's modules reaches the node's certmonger.
        """
        command = [PYTHON]
        if env:
            command = ['/usr/bin/env'] + [
                '%s=%s' % kv for kv in sorted(env.items())] + command
        with open(path, 'w') as f:
            # the lab package is not installed: it runs from the checkout
            f.write('#!/bin/sh\nPYTHONPATH=%s exec %s -m '
                    'tripleo_ipsec_lab.guest %s %s -- %s "$@"\n'
                    % (TOP, sys.executable, self.work, netns,
                       ' '.join(shlex.quote(c) for c in command)))
        os.chmod(path, 0o755)
        return path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 4 or argv[2] != '--':
        sys.stderr.write('usage: python -m tripleo_ipsec_lab.guest WORK '
                         'NETNS -- ARGV...\n')
        return 2
    work, netns, command = argv[0], argv[1], argv[3:]
    spool = Spool(work)
    stdin_file = None
    if not sys.stdin.isatty():
        data = sys.stdin.buffer.read()
        if data:
            stdin_file = os.path.join(spool.dir, 'in', uuid.uuid4().hex)
            with open(stdin_file, 'wb') as f:
                f.write(data)
    try:
        result = spool.run(command, netns or None, stdin_file=stdin_file,
                           timeout=600)
    finally:
        if stdin_file:
            os.unlink(stdin_file)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == '__main__':
    sys.exit(main())
