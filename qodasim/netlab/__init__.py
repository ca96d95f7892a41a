"""A network lab: ``K`` nodes in Linux network namespaces, each on its own shaped link.

Each node ``k`` is a namespace ``qodasim-TAG-k`` with one interface ``eth0`` (address
``10.77.0.(k+1)/24``), the end of a veth pair whose other end ``pk`` sits in the lab's bridge namespace
``qodasim-TAG-br`` on the bridge ``br0``.  Both directions of every node's link are shaped by a token
bucket (``tc``'s ``tbf``): ``eth0``'s egress is the node's upload, ``pk``'s egress its download.  So each
node has its own link of the set rate, as in a cluster behind one switch (shaping one loopback would
shape the sum of all nodes' traffic instead).  ``netem`` (delay, loss) is not used: this kernel may not
have it; the latency is what the stack gives, measured by :meth:`Lab.ping_pong`.

Nothing is addressed outside the namespaces the lab creates, and a lab is always removed:
:class:`Lab` is a context manager, registers its removal with ``atexit``, ``qodasim netlab run``
turns SIGTERM and SIGHUP into an orderly exit, and a lab whose owning process died without cleaning up
(SIGKILL) is removed by the next :meth:`Lab.up` on the machine (:func:`sweep_stale`) or by
``qodasim netlab down``.  Labs made by ``qodasim netlab up`` belong to no process and stay until
``qodasim netlab down``.

Needs root, ``ip`` and ``tc`` (iproute2) and a kernel with network namespaces, veth, bridges and tbf;
:func:`unavailable` says why not, and :class:`NetlabUnavailable` is raised.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NetlabError, NetlabUnavailable
from ..validate import check_int, check_real

__all__ = ["Lab", "NetlabError", "NetlabUnavailable", "PREFIX", "down_all", "labs", "sweep_stale", "unavailable"]

#: Every namespace a lab creates starts with this.
PREFIX = "qodasim-"
SUBNET = "10.77.0"
#: Goodput of a TCP stream over a shaped link, per unit of rate: 1448 payload bytes per 1514-byte frame
#: (Ethernet header 14, IPv4 20, TCP with timestamps 32), the bytes tbf counts.
GOODPUT = 1448 / 1514
PROBE = Path(__file__).resolve().with_name("probe.py")
_unavailable_cache: list[str | None] = []


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(argv, capture_output=True, text=True)
    if check and res.returncode:
        raise NetlabError(f"`{' '.join(argv)}` failed: {res.stderr.strip() or res.returncode}")
    return res


def unavailable() -> str | None:
    """Why a lab cannot be made here (``None`` if it can): root, ``ip``, ``tc``, and a probe namespace
    with a tbf qdisc, made and removed."""
    if _unavailable_cache:
        return _unavailable_cache[0]
    reason = None
    if os.geteuid() != 0:
        reason = "network namespaces need root"
    elif shutil.which("ip") is None or shutil.which("tc") is None:
        reason = "`ip` and `tc` (iproute2) are needed"
    else:
        probe = f"{PREFIX}probe-{os.getpid()}"
        try:
            _run("ip", "netns", "add", probe)
            _run("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1gbit",
                 "burst", "64kb", "latency", "10ms")  # fmt: skip
        except NetlabError as exc:
            reason = str(exc)
        finally:
            _run("ip", "netns", "del", probe, check=False)
    _unavailable_cache.append(reason)
    return reason


def _namespaces() -> list[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def labs() -> list[str]:
    """Tags of the labs on this machine."""
    tags = {ns[len(PREFIX) :].rsplit("-", 1)[0] for ns in _namespaces()}
    return sorted(t for t in tags if not t.startswith("probe"))


def _owner(tag: str) -> int | None:
    """The pid owning a lab (``None``: made by ``qodasim netlab up``, owned by no process)."""
    head = tag.split("x", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def down_all(tag: str | None = None) -> list[str]:
    """Remove the lab ``tag`` (every lab if ``None``); returns the namespaces removed."""
    gone = []
    for ns in _namespaces():
        if tag is None or ns[len(PREFIX) :].rsplit("-", 1)[0] == tag:
            _kill_inside(ns)
            if _run("ip", "netns", "del", ns, check=False).returncode == 0:
                gone.append(ns)
    return gone


def _kill_inside(ns: str) -> None:
    """Kill the processes still running in namespace ``ns`` (else it outlives its name)."""
    pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass


def sweep_stale() -> list[str]:
    """Remove the labs whose owning process is gone; returns the namespaces removed."""
    gone = []
    for tag in labs():
        pid = _owner(tag)
        if pid is not None and not _alive(pid):
            gone += down_all(tag)
    return gone


def _reap(procs: list[subprocess.Popen]) -> None:
    """Kill and wait for the processes still running."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _rate(rate_gbit) -> float:
    if not isinstance(rate_gbit, (int, float)) or isinstance(rate_gbit, bool):
        raise TypeError(f"rate_gbit must be a number, got {type(rate_gbit).__name__}")
    return check_real(rate_gbit, "rate_gbit", 1e-3, 100.0, what="a number in [0.001, 100] Gbit/s")


@dataclass
class Lab:
    """``K`` nodes, each on its own link shaped to ``rate_gbit`` Gbit/s in both directions.

    Parameters
    ----------
    K : int
        Nodes (2 … 64).
    rate_gbit : float
        Each node's link rate (upload and download), Gbit/s.
    persistent : bool
        Owned by no process (``qodasim netlab up``): not swept when this process ends.

    Examples
    --------
    >>> with Lab(4, 1.0) as lab:  # doctest: +SKIP
    ...     lab.bandwidth()  # each node receiving from its ring neighbour at once, Gbit/s
    [0.958, 0.957, 0.958, 0.958]
    """

    K: int
    rate_gbit: float = 1.0
    persistent: bool = False
    tag: str = field(default="", init=False)

    def __post_init__(self) -> None:
        check_int(self.K, "K", error=TypeError, show="type")
        if not 2 <= self.K <= 64:
            raise ValueError(f"K must lie in [2, 64], got {self.K}")
        self.rate_gbit = _rate(self.rate_gbit)

    @property
    def namespaces(self) -> list[str]:
        """The nodes' namespaces."""
        return [f"{PREFIX}{self.tag}-{k}" for k in range(self.K)]

    @property
    def bridge(self) -> str:
        """The bridge's namespace."""
        return f"{PREFIX}{self.tag}-br"

    @property
    def addresses(self) -> list[str]:
        """Each node's IPv4 address."""
        return [f"{SUBNET}.{k + 1}" for k in range(self.K)]

    def _shape(self, ns: str, dev: str) -> None:
        rate_bytes = self.rate_gbit * 1e9 / 8
        burst = max(128 * 1024, int(rate_bytes * 1e-3))  # ≥ 1 ms at the rate, ≥ two GSO segments
        _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate",
             f"{self.rate_gbit * 1000:.6g}mbit", "burst", str(burst), "latency", "25ms")  # fmt: skip

    def up(self) -> Lab:
        """Make the namespaces, links and shaping (removing stale labs first); on any failure remove
        what was made and raise :class:`NetlabError`."""
        reason = unavailable()
        if reason is not None:
            raise NetlabUnavailable(f"no network lab on this machine: {reason}")
        if self.tag:
            raise NetlabError(f"lab {self.tag} is already up")
        sweep_stale()
        self.tag = f"p{secrets.token_hex(3)}" if self.persistent else f"{os.getpid()}x{secrets.token_hex(2)}"
        if not self.persistent:
            atexit.register(self.down)
        try:
            _run("ip", "netns", "add", self.bridge)
            _run("ip", "-n", self.bridge, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.bridge, "link", "set", "br0", "up")
            for k, (ns, addr) in enumerate(zip(self.namespaces, self.addresses)):
                _run("ip", "netns", "add", ns)
                _run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"p{k}", "netns",
                     self.bridge)  # fmt: skip
                _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
                _run("ip", "-n", self.bridge, "link", "set", f"p{k}", "master", "br0")
                _run("ip", "-n", self.bridge, "link", "set", f"p{k}", "up")
                self._shape(ns, "eth0")
                self._shape(self.bridge, f"p{k}")
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Remove the lab (idempotent): the processes inside, the namespaces and with them every link."""
        if not self.tag:
            return
        down_all(self.tag)
        atexit.unregister(self.down)
        self.tag = ""

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    def _check_up(self) -> None:
        if not self.tag:
            raise NetlabError("the lab is not up (use `with Lab(...)` or .up())")

    def popen(self, k: int, argv: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
        """Start ``argv`` in node ``k``'s namespace, with ``QODASIM_NETLAB_RANK/SIZE/ADDRS`` set."""
        self._check_up()
        full = dict(os.environ if env is None else env)
        full.update(QODASIM_NETLAB_RANK=str(k), QODASIM_NETLAB_SIZE=str(self.K),
                    QODASIM_NETLAB_ADDRS=",".join(self.addresses), QODASIM_NETLAB_TAG=self.tag)  # fmt: skip
        return subprocess.Popen(["ip", "netns", "exec", self.namespaces[k], *argv], env=full, **kwargs)

    def run(self, argv: list[str], timeout: float | None = None, **kwargs) -> list[int]:
        """Run ``argv`` on every node at once; returns the exit codes (the processes are killed on a
        timeout or an exception, before the lab can be removed)."""
        procs: list[subprocess.Popen] = []
        try:  # started inside the try: an interrupt between two starts still reaps the first
            for k in range(self.K):
                procs.append(self.popen(k, argv, **kwargs))
            return [p.wait(timeout=timeout) for p in procs]
        finally:
            _reap(procs)

    def run_json(self, jobs: list[tuple[int, list[str]]], timeout: float, env: dict | None = None,
                 what: str = "a process") -> list[dict]:  # fmt: skip
        """Start every ``(node, argv)`` job at once and return each one's last line of output parsed as
        JSON, in job order; a job that fails raises :class:`NetlabError` naming ``what`` with the end
        of its error output (the others are killed)."""
        procs: list[subprocess.Popen] = []
        out = []
        try:
            for k, argv in jobs:
                procs.append(self.popen(k, argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for p in procs:
                stdout, stderr = p.communicate(timeout=timeout)
                if p.returncode:
                    raise NetlabError(f"{what} failed: {stderr.strip()[-400:]}")
                out.append(json.loads(stdout.strip().splitlines()[-1]))
        finally:
            _reap(procs)
        return out

    def _probes(self, jobs: list[tuple[int, list[str]]], timeout: float) -> list[dict]:
        return self.run_json([(k, [sys.executable, str(PROBE), *args]) for k, args in jobs], timeout, what="a probe")

    def transfer(self, pairs, nbytes: int = 64 << 20, timeout: float = 60.0, total: bool = False):
        """Goodput in Gbit/s of concurrent bulk TCP transfers, ``nbytes`` each, one per ``(sender,
        receiver)`` pair: each pair's (first byte to last at its receiver) or, with ``total``, all
        bytes over the span from the first byte of any to the last of all (streams sharing a link
        end at different times, so their own averages do not add up).  TCP/IP headers take ~4.4% of
        a 1500-byte frame, so a link shaped to ``r`` carries ≈ ``GOODPUT``·r = 0.956·r of goodput."""
        self._check_up()
        pairs = [(int(a), int(b)) for a, b in pairs]
        if not pairs or any(not (0 <= a < self.K and 0 <= b < self.K) or a == b for a, b in pairs):
            raise ValueError(f"pairs must be (sender, receiver) nodes in [0, {self.K}), not equal, got {pairs}")
        ports = [5101 + i for i in range(len(pairs))]
        recv = [(b, ["recv", self.addresses[b], str(port), str(nbytes)]) for (a, b), port in zip(pairs, ports)]
        send = [(a, ["send", self.addresses[b], str(port), str(nbytes)]) for (a, b), port in zip(pairs, ports)]
        res = self._probes(recv + send, timeout)[: len(pairs)]
        if total:
            span = max(r["last"] for r in res) - min(r["first"] for r in res)
            return 8 * sum(r["bytes"] for r in res) / span / 1e9
        return [r["bits_per_second"] / 1e9 for r in res]

    def bandwidth(self, nbytes: int = 64 << 20, timeout: float = 60.0) -> list[float]:
        """Goodput in Gbit/s into every node while each node ``k − 1`` sends ``nbytes`` to node ``k`` at
        once (every link busy in both directions): :meth:`transfer` on the ring."""
        return self.transfer([((k - 1) % self.K, k) for k in range(self.K)], nbytes, timeout)

    def ping_pong(self, sizes=(1, 1 << 20), repeats: int = 20, a: int = 0, b: int = 1,
                  timeout: float = 60.0) -> list[dict]:  # fmt: skip
        """Round trips between nodes ``a`` and ``b`` for each message size (bytes): ``[{"bytes", "best",
        "median"}]`` in seconds — a one-way message costs about half (``α + 8·bytes/β``)."""
        self._check_up()
        port = 5201
        res = self._probes([(b, ["pong", self.addresses[b], str(port)]),
                            (a, ["ping", self.addresses[b], str(port), ",".join(map(str, sizes)), str(repeats)])],
                           timeout)  # fmt: skip
        return res[1]["round_trips"]
