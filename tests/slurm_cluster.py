"""A single-node Slurm cluster on this host for the launcher integration test.

munged, slurmctld and slurmd run as root with their state in a temporary folder and a
``slurm.conf`` that tracks processes without cgroups (``proctrack/pgid``, ``task/none``) and
keeps no accounting, so the cluster starts in seconds on a CI machine. ``.ci/run`` installs the
Debian packages (slurm-wlm, munge).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MUNGE_KEY = Path("/etc/munge/munge.key")
DAEMONS = ("munged", "slurmctld", "slurmd")


def missing() -> str | None:
    """Why no cluster can be started here, or None."""
    absent = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the single-node cluster runs its daemons as root"
    running = [
        d for d in ("slurmctld", "slurmd") if subprocess.run(["pgrep", "-x", d], capture_output=True).returncode == 0
    ]
    if running:
        return f"{', '.join(running)} already running on this host (stop it: scontrol shutdown)"
    return None


def _config(folder: Path) -> str:
    host = socket.gethostname().split(".")[0]
    memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)
    settings = {
        "ClusterName": "purebench", "SlurmctldHost": host, "SlurmUser": "root", "SlurmdUser": "root",
        "AuthType": "auth/munge", "ProctrackType": "proctrack/pgid", "TaskPlugin": "task/none",
        "SchedulerType": "sched/backfill", "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core",
        "StateSaveLocation": folder / "state", "SlurmdSpoolDir": folder / "spool",
        "SlurmctldPidFile": folder / "slurmctld.pid", "SlurmdPidFile": folder / "slurmd.pid",
        "SlurmctldLogFile": folder / "slurmctld.log", "SlurmdLogFile": folder / "slurmd.log",
        "ReturnToService": 2, "KillWait": 1,  # SIGKILL 1 s after scancel's SIGTERM (submitit ignores SIGTERM)
        "MpiDefault": "none", "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
    }  # fmt: skip
    lines = [f"{k}={v}" for k, v in settings.items()]
    lines.append(f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory_mb} State=UNKNOWN")
    lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def _munge() -> None:
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return
    if not MUNGE_KEY.exists():
        subprocess.run(["mungekey", "--create"], check=True)
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    Path("/run/munge").mkdir(exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "munged"], check=True)


@contextmanager
def cluster(folder: Path) -> Iterator[dict[str, str]]:
    """Start the cluster; yields the environment that points Slurm's commands at it."""
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "slurm.conf").write_text(_config(folder))
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    _munge()
    subprocess.run(["slurmctld"], env=env, check=True)
    subprocess.run(["slurmd"], env=env, check=True)
    try:
        deadline = time.time() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout:
            if time.time() > deadline:
                raise RuntimeError("the Slurm node did not come up: " + (folder / "slurmctld.log").read_text()[-2000:])
            time.sleep(0.5)
        yield env
    finally:
        subprocess.run(["scontrol", "shutdown"], env=env, capture_output=True)
        subprocess.run(["pkill", "-KILL", "-f", "slurmstepd"], capture_output=True)  # steps of jobs cut short
        deadline = time.time() + 30
        while time.time() < deadline and any(
            subprocess.run(["pgrep", "-x", d], capture_output=True).returncode == 0 for d in ("slurmctld", "slurmd")
        ):
            time.sleep(0.2)
