"""A single-node SLURM cluster on localhost, started by the tests and stopped by its PIDs; or
two nodes on the same machine, for a run across nodes (``Cluster(root, nodes=2)``, below).

Debian 12's packages (``munge``, ``slurmctld``, ``slurmd``, ``slurm-client``, SLURM 22.05),
installed with apt-get when missing. ``slurm.conf`` and ``gres.conf`` go where SLURM looks by
default, ``/etc/slurm``: the executor plugin's job step drops ``SLURM_CONF`` from the
environment of the ``srun`` it runs inside each job (snakemake-executor-plugin-slurm-jobstep
0.6.1 keeps only a few ``SLURM_*`` variables), so a configuration elsewhere is not found there.
A machine with a ``slurm.conf`` of its own is left alone (the tests skip), and a lock file makes
a second test session wait for the first. Everything else is private to one folder: a munge key
and socket, state, spool, logs, fake GPU devices, and two free TCP ports, so a munged or SLURM
already on the machine is not disturbed.

The configuration avoids what a machine without systemd lacks (facts from a trial run, SLURM
22.05, and its slurm.conf(5) and gres.conf(5) man pages):

- ``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none``, no cgroup.conf: no
  cgroups (``CgroupPlugin=disabled`` is rejected by 22.05);
- ``SlurmdParameters=config_overrides``: the node advertises 64 CPUs, 256 GB and 4 GPUs, more
  than the machine has, so that two Snakemake runs with the SLURM profile's requests (8 CPUs
  and 32 GB for pretraining, a GPU for each GPU job) run side by side;
- GRES GPUs need ``File=`` entries, or the node drains: symlinks to /dev/null stand for
  /dev/nvidia0 to /dev/nvidia3, and SLURM sets ``CUDA_VISIBLE_DEVICES`` from them;
- the node is named ``localhost`` (``slurmd -N localhost``);
- ``MinJobAge=1800``: a finished job stays visible to ``squeue`` for 30 minutes. The plugin
  needs at least three times its first status wait (else it falls back to ``sacct``; SLURM's
  default, 300 s, is enough), and the tests count a run's jobs after it ends;
- no accounting (``AccountingStorageType=accounting_storage/none``): ``sacct`` then fails, as
  on a cluster without slurmdbd; :meth:`Cluster.enable_accounting` adds slurmdbd over a MariaDB
  in the same folder and restarts slurmctld and slurmd with it;
- ``KillWait=2``: a job past its time limit gets SIGTERM, then SIGKILL 2 s later.

Two nodes (``nodes=2``, tests/test_slurm_multinode.py): two slurmd on this machine, ``node1``
and ``node2``, each with its own ``Port=`` (Debian's SLURM is built without
``--enable-multiple-slurmd``, and per-node ports are all it needs: a trial run), spool folder,
PID and log file (``-%n``), both at ``NodeAddr=127.0.0.1``, with two of the four fake GPUs each. SLURM
then allocates, and ``srun`` starts tasks on, two nodes as on a real cluster; what it cannot
show is a second machine's network and filesystem.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
BINARIES = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
PARTITION = "gpu"  # the SLURM profile's default partition
GPUS = 4
CONF_DIR = Path("/etc/slurm")
MARKER = "# written by momentum-ssl's tests/slurm_cluster.py; removed when its tests end\n"


class Unavailable(RuntimeError):
    """The cluster cannot be started here; the message says why (the tests skip with it)."""


# Accounting: slurmdbd over a MariaDB of its own. The "-core" packages carry mariadbd and the
# client without an init script, so installing them starts no system database.
ACCOUNTING_PACKAGES = ("slurmdbd", "mariadb-server-core", "mariadb-client-core")
ACCOUNTING_BINARIES = ("slurmdbd", "mariadbd", "mariadb-install-db", "mariadb", "sacctmgr")


def _missing(binaries) -> list[str]:
    return [b for b in binaries
            if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def install(packages=PACKAGES, binaries=BINARIES) -> None:
    """apt-get install the Debian packages when one of their binaries is missing (root only)."""
    if not _missing(binaries):
        return
    what = f"{' '.join(packages)} ({', '.join(_missing(binaries))} missing)"
    if os.geteuid() != 0:
        raise Unavailable(f"installing {what} needs root")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"no apt-get to install {what}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    get = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-qq"]
    cmd = [*get, "install", "-y", "--no-install-recommends", *packages]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:  # a fresh machine has no package lists yet
        subprocess.run([*get, "update"], env=env, capture_output=True, text=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode or _missing(binaries):
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise Unavailable(f"apt-get install {' '.join(packages)} failed: {last}")


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


class Cluster:
    """munged, slurmctld and slurmd for one folder; :meth:`stop` ends exactly these PIDs."""

    def __init__(self, root: Path, conf_dir: Path = CONF_DIR, nodes: int = 1):
        self.root = Path(root)
        self.nodes = ("localhost",) if nodes == 1 else tuple(f"node{i + 1}" for i in range(nodes))
        self.conf = Path(conf_dir) / "slurm.conf"
        self.gres = Path(conf_dir) / "gres.conf"
        self.dbd_conf = Path(conf_dir) / "slurmdbd.conf"
        self.accounting_port: int | None = None  # slurmdbd's, once enable_accounting ran
        self.ports: list[int] | None = None
        self.procs: list[subprocess.Popen] = []
        self._lock = None

    def env(self, base: dict | None = None) -> dict:
        """An environment whose SLURM commands talk to this cluster."""
        return {**(os.environ if base is None else base), "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> str:
        done = subprocess.run(list(cmd), env=self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
        return done.stdout

    def _write_config(self) -> None:
        root = self.root
        # munged wants its socket's folders executable by all, and its key's not writable by
        # others; pytest's temporary folders are 0700, so callers pass a folder of their own
        for sub, mode in (("", 0o755), ("munge", 0o755), ("key", 0o700),
                          ("state", 0o700), ("spool", 0o700), ("log", 0o755), ("dev", 0o755)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            (root / sub).chmod(mode)
        for i in range(GPUS):  # fake GPU devices: GRES needs a file per device
            dev = root / "dev" / f"nvidia{i}"
            if not dev.exists():
                dev.symlink_to("/dev/null")
        if self.ports is None:  # kept when the configuration is rewritten
            self.ports = _free_ports(1 + len(self.nodes))
        ctld_port, slurmd_port = self.ports[:2]
        per_node = "" if len(self.nodes) == 1 else "-%n"  # each slurmd its own files
        if self.accounting_port is None:  # sacct then fails, as on a cluster without slurmdbd
            accounting = "AccountingStorageType=accounting_storage/none\n"
        else:
            accounting = ("AccountingStorageType=accounting_storage/slurmdbd\n"
                          f"AccountingStorageHost=localhost\n"
                          f"AccountingStoragePort={self.accounting_port}\n"
                          # for slurmdbd connections this names the munge socket (slurm.conf(5))
                          f"AccountingStoragePass={root}/munge/munge.socket\n")
        self.conf.write_text(MARKER + accounting + f"""\
ClusterName=momentumssl
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool{per_node}
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd{per_node}.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd{per_node}.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=1800
KillWait=2
GresTypes=gpu
{self._nodes_config()}""")
        self.gres.write_text(MARKER + self._gres_config())

    def _nodes_config(self) -> str:
        if len(self.nodes) == 1:
            return (f"NodeName=localhost CPUs=64 RealMemory=256000 Gres=gpu:{GPUS} "
                    "State=UNKNOWN\n"
                    f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE "
                    "State=UP\n")
        lines = []
        for name, port in zip(self.nodes, self.ports[1:]):
            (self.root / f"spool-{name}").mkdir(mode=0o700, exist_ok=True)
            lines.append(f"NodeName={name} NodeAddr=127.0.0.1 Port={port} CPUs=32 "
                         f"RealMemory=128000 Gres=gpu:{GPUS // len(self.nodes)} State=UNKNOWN")
        lines.append(f"PartitionName={PARTITION} Nodes={','.join(self.nodes)} Default=YES "
                     "MaxTime=INFINITE State=UP")
        return "\n".join(lines) + "\n"

    def _gres_config(self) -> str:
        dev = self.root / "dev"
        if len(self.nodes) == 1:
            return f"NodeName=localhost Name=gpu File={dev}/nvidia[0-{GPUS - 1}]\n"
        each = GPUS // len(self.nodes)
        return "".join(f"NodeName={name} Name=gpu File={dev}/nvidia[{i * each}-{(i + 1) * each - 1}]"
                       "\n" for i, name in enumerate(self.nodes))

    def _spawn(self, *cmd: str) -> None:
        log = open(self.root / "log" / f"{Path(cmd[0]).name}.out", "ab")
        # a session of its own: a Ctrl-C meant for pytest or a test's Snakemake never reaches it
        self.procs.append(subprocess.Popen(list(cmd), env=self.env(), stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))
        log.close()

    def _take_config_dir(self, wait_s: float) -> None:
        """Lock /etc/slurm for this session, or raise Unavailable if it belongs to another
        SLURM; a marked configuration left by a killed session is simply replaced."""
        if os.geteuid() != 0:
            raise Unavailable(f"starting SLURM daemons and writing {self.conf} need root")
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        lock = open(self.conf.parent / ".momentum-ssl-tests.lock", "a")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock = lock
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise Unavailable(f"another test session's SLURM cluster held "
                                      f"{self.conf.parent} for {wait_s:.0f} s") from None
                time.sleep(1)
        for path in (self.conf, self.gres, self.dbd_conf):
            if path.exists() and not path.read_text().startswith(MARKER):
                self._release()
                raise Unavailable(f"{path} configures another SLURM on this machine; the "
                                  "test cluster would replace it")

    def _release(self) -> None:
        if self._lock is None:  # the configuration is not ours to remove
            return
        for path in (self.conf, self.gres, self.dbd_conf):
            if path.exists() and path.read_text().startswith(MARKER):
                path.unlink()
        if self._lock is not None:
            self._lock.close()  # drops the flock
            self._lock = None

    def start(self, timeout: float = 60, lock_wait_s: float = 900) -> "Cluster":
        self._take_config_dir(lock_wait_s)
        self._write_config()
        key = self.root / "key" / "munge.key"
        if not key.exists():
            subprocess.run([_binary("mungekey"), "--create", f"--keyfile={key}"], check=True,
                           capture_output=True)
        munge = self.root / "munge"
        self._spawn(_binary("munged"), "-F", f"--socket={munge}/munge.socket",
                    f"--key-file={key}", f"--pid-file={munge}/munged.pid",
                    f"--log-file={self.root}/log/munged.log",
                    f"--seed-file={self.root}/key/seed")
        self._wait(lambda: (munge / "munge.socket").exists(), timeout, "munged's socket")
        self._start_slurm(timeout)
        return self

    def _start_slurm(self, timeout: float) -> None:
        self._spawn(_binary("slurmctld"), "-D", "-i", "-f", str(self.conf))
        for name in self.nodes:
            self._spawn(_binary("slurmd"), "-D", "-N", name, "-f", str(self.conf))
        self._wait(self.idle, timeout, "the node to be idle")

    def _end(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.remove(proc)

    def enable_accounting(self, timeout: float = 60) -> float:
        """Start MariaDB and slurmdbd, then restart slurmctld and slurmd with accounting
        (jobs and their state are kept: slurmctld saves them); returns the seconds it took."""
        start = time.monotonic()
        db, sock = self.root / "mysql", self.root / "mysql.sock"
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={db}", "--user=root",
                        "--auth-root-authentication-method=socket", "--skip-test-db"],
                       check=True, capture_output=True)
        db_port, self.accounting_port = _free_ports(2)
        self._spawn(_binary("mariadbd"), "--no-defaults", f"--datadir={db}", f"--socket={sock}",
                    f"--port={db_port}", "--bind-address=127.0.0.1", "--user=root",
                    "--skip-log-bin", f"--log-error={self.root}/log/mariadb.log")
        self._wait(sock.exists, timeout, "MariaDB's socket")
        subprocess.run(["mariadb", f"--socket={sock}", "-u", "root", "-e",
                        "CREATE DATABASE slurm_acct_db; CREATE USER 'slurm'@'127.0.0.1' "
                        "IDENTIFIED BY 'momentum-ssl'; "
                        "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"],
                       check=True, capture_output=True)
        self.dbd_conf.write_text(MARKER + f"""\
AuthType=auth/munge
AuthInfo=socket={self.root}/munge/munge.socket
DbdHost=localhost
DbdPort={self.accounting_port}
SlurmUser=root
PidFile={self.root}/slurmdbd.pid
LogFile={self.root}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=slurm
StoragePass=momentum-ssl
StorageLoc=slurm_acct_db
""")
        self.dbd_conf.chmod(0o600)  # slurmdbd refuses a readable password file
        self._spawn(_binary("slurmdbd"), "-D")
        self._write_config()  # sacctmgr reads slurm.conf's accounting lines too
        self._wait(lambda: subprocess.run(["sacctmgr", "-n", "list", "cluster"], env=self.env(),
                                          capture_output=True).returncode == 0,
                   timeout, "slurmdbd to answer")
        self.run("sacctmgr", "-i", "add", "cluster", "momentumssl")
        for name in ("slurmd", "slurmctld"):
            self._end(next(p for p in self.procs if Path(p.args[0]).name == name))
        self._start_slurm(timeout)
        return time.monotonic() - start

    def _check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited with {p.returncode}; "
                                   f"logs in {self.root / 'log'}: {self.log_tail()}")

    def idle(self) -> bool:
        done = subprocess.run(["sinfo", "-h", "-N", "-n", ",".join(self.nodes), "-o", "%T"],
                              env=self.env(), capture_output=True, text=True)
        return done.returncode == 0 and done.stdout.split() == ["idle"] * len(self.nodes)

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; "
                                   f"{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 5) -> str:
        out = []
        for log in sorted((self.root / "log").glob("*")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"{log.name}: " + " | ".join(tail))
        return "; ".join(out)

    def jobs(self) -> list[tuple[str, str, str]]:
        """(job id, name, state) of every job slurmctld still knows, finished ones included."""
        out = self.run("squeue", "-h", "--states=all", "-o", "%i|%j|%T")
        return [tuple(line.split("|")) for line in out.splitlines() if line]

    def stop(self) -> None:
        """Cancel what still runs, then end the daemons this object started, last first."""
        if self.procs and self.procs[0].poll() is None:
            subprocess.run(["scancel", "--user", str(os.getuid())], env=self.env(),
                           capture_output=True, timeout=30)
        for p in reversed(list(self.procs)):
            self._end(p)
        self._release()


def running_cluster(prefix: str, nodes: int = 1):
    """A pytest fixture's body: a started Cluster of ``nodes`` slurmd under a fresh temporary
    folder (not pytest's: munged checks its path), yielded, then stopped by its PIDs and
    removed; the test is skipped, with the reason, where SLURM cannot be installed or start."""
    import tempfile

    import pytest

    root = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = Cluster(root, nodes=nodes)
    try:
        try:
            install()
            cluster.start()
        except Unavailable as e:
            pytest.skip(str(e))
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
