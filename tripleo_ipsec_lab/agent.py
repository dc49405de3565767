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

"""The lab guest's agent: runs the host's commands inside the guest.

This is the guest's only long-lived process besides the lab's daemons
(pluto, tcpdump ...).  The host writes a request as ``SPOOL/req/ID.json``;
the agent starts it (in a node's network namespace when one is named) and
answers with ``SPOOL/res/ID.json`` once it is done.  The spool is on a
hostfs mount, so requests and answers are plain files on the host, and
nothing needs a network device towards the host.  Standard library only:
it runs under the guest's ``/usr/bin/python3``.

Requests (JSON):
  {"op": "run", "argv": [...], "netns": "n1", "stdin": "...",
   "stdin_file": PATH, "timeout": 60}
      -> {"rc": N, "stdout": "...", "stderr": "...", "ms": N}
  {"op": "spawn", ...}   start in the background -> {"pid": N}
  {"op": "signal", "pid": N, "signal": 15}     -> {"rc": 0}
  {"op": "wait", "pid": N, "timeout": 60}      -> like "run"
  {"op": "poweroff"}
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

# poll fast while requests come, slower when idle: every poll of the spool
# is a hostfs round trip, on the guest's one CPU
POLL_BUSY, POLL_IDLE, BUSY_FOR = 0.003, 0.02, 2.0


def _write(path, data):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


class Job(object):

    def __init__(self, rid, req):
        argv = list(req['argv'])
        if req.get('netns'):
            argv = ['ip', 'netns', 'exec', req['netns']] + argv
        self.rid = rid
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        stdin = subprocess.DEVNULL
        if req.get('stdin_file'):
            stdin = open(req['stdin_file'], 'rb')
        elif req.get('stdin') is not None:
            stdin = tempfile.TemporaryFile()
            stdin.write(req['stdin'].encode())
            stdin.seek(0)
        self.start = time.monotonic()
        self.deadline = self.start + float(req.get('timeout') or 86400)
        try:
            self.proc = subprocess.Popen(
                argv, stdin=stdin, stdout=self.out, stderr=self.err,
                start_new_session=True)
            self.error = None
        except OSError as e:
            self.proc, self.error = None, str(e)
        if stdin is not subprocess.DEVNULL:
            stdin.close()
        self.waiters = []

    def poll(self):
        if self.proc is None:
            return 127
        rc = self.proc.poll()
        if rc is None and time.monotonic() > self.deadline:
            os.killpg(self.proc.pid, signal.SIGKILL)
            rc = self.proc.wait()
            self.error = 'timed out'
        return rc

    def result(self, rc):
        def read(f):
            f.seek(0)
            return f.read().decode(errors='replace')
        return {'rc': rc, 'stdout': read(self.out),
                'stderr': read(self.err) + (self.error or ''),
                'ms': int((time.monotonic() - self.start) * 1000)}


def reap(known):
    """Reap exited orphans: the agent is the guest's PID 1."""
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) in known:
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == 'Z' and int(fields[1]) == os.getpid():
            try:
                os.waitpid(int(entry), os.WNOHANG)
            except ChildProcessError:
                pass


def serve(spool):
    req_dir = os.path.join(spool, 'req')
    res_dir = os.path.join(spool, 'res')
    jobs = {}          # pid or rid -> Job still running
    background = {}    # pid -> Job started by "spawn"
    _write(os.path.join(spool, 'ready.json'), {'pid': os.getpid()})
    last = reaped = time.monotonic()
    while True:
        busy = False
        for entry in sorted(os.listdir(req_dir)):
            if not entry.endswith('.json'):
                continue
            busy = True
            rid = entry[:-5]
            path = os.path.join(req_dir, entry)
            with open(path) as f:
                req = json.load(f)
            os.unlink(path)
            op = req['op']
            answer = None
            if op == 'poweroff':
                _write(os.path.join(res_dir, rid + '.json'), {'rc': 0})
                os.sync()
                with open('/proc/sysrq-trigger', 'w') as f:
                    f.write('o')
                time.sleep(10)
                sys.exit(0)
            elif op in ('run', 'spawn'):
                job = Job(rid, req)
                if op == 'run':
                    jobs[rid] = job
                else:
                    pid = job.proc.pid if job.proc else -1
                    background[pid] = job
                    answer = {'pid': pid, 'error': job.error}
            elif op == 'signal':
                job = background.get(req['pid'])
                if job and job.proc and job.proc.poll() is None:
                    os.killpg(job.proc.pid, req.get('signal', 15))
                answer = {'rc': 0}
            elif op == 'wait':
                job = background.pop(req['pid'], None)
                if job is None:
                    answer = {'rc': 127, 'stdout': '',
                              'stderr': 'no such job'}
                else:
                    job.rid = rid
                    job.deadline = time.monotonic() + float(
                        req.get('timeout') or 60)
                    jobs[rid] = job
            else:
                answer = {'rc': 2, 'stdout': '', 'stderr': 'bad op %s' % op}
            if answer is not None:
                _write(os.path.join(res_dir, rid + '.json'), answer)
        for rid, job in list(jobs.items()):
            rc = job.poll()
            if rc is not None:
                busy = True
                del jobs[rid]
                _write(os.path.join(res_dir, job.rid + '.json'),
                       job.result(rc))
        now = time.monotonic()
        if busy or jobs:
            last = now
        if now - reaped > 0.5:
            reaped = now
            reap({j.proc.pid for j in list(jobs.values()) +
                  list(background.values()) if j.proc})
        if not busy:
            time.sleep(POLL_BUSY if now - last < BUSY_FOR else POLL_IDLE)


if __name__ == '__main__':
    serve(sys.argv[1])
