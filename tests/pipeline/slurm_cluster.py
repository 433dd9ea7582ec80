"""A real single-node SLURM for the tests: munged, slurmctld and slurmd from Debian's
``munge`` and ``slurm-wlm`` packages (``make slurmdeps``), each started in the foreground by
this module with a generated slurm.conf, a private munge key and socket, free loopback ports
and state, spool and log dirs under one temporary folder; stopped again by their PIDs.

``python tests/pipeline/slurm_cluster.py DIR`` starts one by hand and prints the
``SLURM_CONF`` to export (Ctrl-C stops it).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = {"munged": "/usr/sbin/munged", "slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd"}
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "srun")
PARTITION = "debug"
CPUS = 3

SLURM_CONF = """\
ClusterName=resnetnb
SlurmctldHost={host}(127.0.0.1)
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long before it may start again (default 120 s)
AuthInfo=socket={munge_socket},cred_expire=10
StateSaveLocation={w}/state
SlurmdSpoolDir={w}/spool
SlurmctldPidFile={w}/slurmctld.pid
SlurmdPidFile={w}/slurmd.pid
SlurmctldLogFile={w}/log/ctld.log
SlurmdLogFile={w}/log/d.log
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# the main scheduling loop every second (default 60 s): a requeued task starts promptly
SchedulerParameters=sched_interval=1
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
# take the node's CPUs from here even where the machine has fewer: three one-CPU tasks at once
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def unavailable() -> str | None:
    """Why a SLURM cannot be started here (None: it can)."""
    if not sys.platform.startswith("linux"):
        return "a single-node SLURM needs Linux"
    missing = [p for p in DAEMONS.values() if not os.access(p, os.X_OK)]
    missing += [c for c in CLIENTS if shutil.which(c) is None]
    if missing:
        return f"SLURM/munge not installed ({', '.join(missing)} missing): run `make slurmdeps`"
    if os.geteuid() != 0:
        return "starting slurmd (SlurmdUser=root) needs root"
    return None


def _die_with_parent() -> None:
    """In the daemon before exec: SIGTERM when the process that started it dies (a killed
    test run leaves no daemons behind)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """munged + slurmctld + slurmd on this host; ``env`` holds SLURM_CONF for the clients."""

    def __init__(self, workdir: Path) -> None:
        self.w = Path(workdir)
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.w / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.partition = PARTITION

    def start(self, timeout_s: float = 60.0) -> "SlurmCluster":
        w = self.w
        for d in ("state", "spool", "log", "munge"):
            (w / d).mkdir(parents=True, exist_ok=True)
        os.chmod(w, 0o755)
        os.chmod(w / "munge", 0o755)
        key = w / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(SLURM_CONF.format(
            host=host, user="root", w=w, munge_socket=w / "munge" / "munge.socket", ctld_port=_free_port(),
            d_port=_free_port(), cpus=CPUS, partition=PARTITION))
        try:
            self._spawn("munged", [DAEMONS["munged"], "--foreground", "--force", f"--key-file={key}",
                                   f"--socket={w / 'munge' / 'munge.socket'}", f"--pid-file={w / 'munged.pid'}",
                                   f"--log-file={w / 'log' / 'munged.log'}", f"--seed-file={w / 'munged.seed'}"])
            self._wait_for(lambda: (w / "munge" / "munge.socket").exists(), timeout_s, "munged's socket")
            self._spawn("slurmctld", [DAEMONS["slurmctld"], "-D", "-c", "-i"])
            self._wait_for(lambda: self._run("scontrol", "ping").returncode == 0, timeout_s, "slurmctld (scontrol ping)")
            self._spawn("slurmd", [DAEMONS["slurmd"], "-D", "-c"])
            self._wait_for(lambda: self._run("sinfo", "-h", "-N", "-o", "%T").stdout.strip() == "idle",
                           timeout_s, "the node to be idle (sinfo)")
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.w / "log" / f"{name}.console").open("wb")
        self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent)
        log.close()

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60)

    def _wait_for(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}:\n{self.logs()}")

    def logs(self, tail: int = 15) -> str:
        out = []
        for p in sorted((self.w / "log").glob("*")):
            lines = p.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {p.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def squeue(self, *args: str) -> str:
        """Every job the controller knows (``-t all``: ended ones too), one ``id state reason`` a line."""
        return self._run("squeue", "-h", "-r", "-t", "all", "-o", "%i %T %r", *args).stdout

    def scontrol(self, *args: str) -> str:
        res = self._run("scontrol", *args)
        return res.stdout + res.stderr

    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged by their PIDs."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self._run("scancel", "--partition", PARTITION)
                deadline = time.time() + 20
                while time.time() < deadline and self._run("squeue", "-h", "-o", "%i").stdout.strip():
                    time.sleep(0.3)
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.procs.clear()


if __name__ == "__main__":
    why = unavailable()
    if why:
        sys.exit(why)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill PID: stop the daemons too
    cluster = SlurmCluster(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/resnet-nb-slurm")).start()
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
