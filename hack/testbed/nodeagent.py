"""The test bed's node agent: a kubelet that runs each container as a local process.

It registers one Node, keeps it Ready (status heartbeats and a Lease), and for every pod bound
to it: resolves each container's env (literals, Secrets, ConfigMaps, the downward API), writes a
kubeconfig carrying a token of the pod's ServiceAccount (TokenRequest, bound to the pod, so RBAC
applies to what the pod does), mounts its Secret and ConfigMap volumes (volumes.py: a mount
namespace per container), runs `command` + `args` with the test bed's PATH, restarts per
`restartPolicy` (a container killed by a signal counts as failed, so `Always` and `OnFailure`
bring it back after a back-off), reports phase, readiness, exit codes and restarts in the pod
status, keeps each container's output in `<state>/pods/<namespace>/<pod>/<container>.log` and its
pid in `<container>.pid`, and on deletion sends SIGTERM, then SIGKILL after the grace period,
then removes the pod.

What it does not do: pull images (a container without `command` waits with reason NoCommand),
isolate processes (pods share the host's network; each gets its own loopback podIP, so
processes that bind `status.podIP` coexist), liveness probes, volumes other than Secrets and
ConfigMaps.

    python -m testbed.nodeagent    (PYTHONPATH=hack; started by `python -m testbed up`)
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import pki, podenv, procs, volumes
from .layout import NODE_NAME, paths, ports
from .rest import ApiError, Rest

log = logging.getLogger("nodeagent")

HEARTBEAT_SECONDS = 10.0
LEASE_SECONDS = 40
TOKEN_SECONDS = 86400
# Kubelet backs off 10s doubling to 5m; a test bed wants crashes retried sooner.
BACKOFF_FIRST, BACKOFF_MAX, BACKOFF_RESET = 1.0, 30.0, 60.0
# Set in every container process: a restarted agent stops what a dead one left running, as a
# rebooted node would have lost them.
POD_MARKER = "CONVEYOR_TESTBED_POD"
BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_network(state: Path) -> int:
    """The second octet of this test bed's pod addresses: 2 to 254, stable per state dir."""
    return 2 + int(hashlib.sha256(str(state).encode()).hexdigest(), 16) % 253


class PodIPs:
    """Hands out loopback addresses 127.N.x.y, one per pod, so pods can bind their own IP.

    N is the test bed's own (from its state directory), so the pods of two test beds on one
    machine (a checkout and its CI clone, say) never get the same address.
    """

    def __init__(self, network: int) -> None:
        self._network = network
        self._lock = threading.Lock()
        self._next = 1
        self._by_uid: dict[str, str] = {}

    def get(self, uid: str) -> str:
        with self._lock:
            if uid not in self._by_uid:
                n = self._next
                self._next = n + 1 if n < 65000 else 1
                self._by_uid[uid] = f"127.{self._network}.{n // 250}.{n % 250 + 2}"
            return self._by_uid[uid]

    def release(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)


@dataclass
class Container:
    spec: dict[str, Any]
    init: bool = False
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    started_mono: float = 0.0
    restart_count: int = 0
    terminated: dict[str, Any] | None = None  # the state after the last exit
    last_state: dict[str, Any] = field(default_factory=dict)
    waiting: tuple[str, str] | None = None
    next_start: float = 0.0
    backoff: float = BACKOFF_FIRST
    waited: float = BACKOFF_FIRST  # the pause before the coming restart
    ready: bool = False
    next_probe: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class PodRunner(threading.Thread):
    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid: str = meta["uid"]
        self.ns: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.dir = agent.paths.pods / self.ns / self.pod_name
        self.wake = threading.Event()
        self.gone = False
        self.ip = agent.ips.get(self.uid)
        spec = pod["spec"]
        self.inits = [Container(c, init=True) for c in spec.get("initContainers") or []]
        self.containers = [Container(c) for c in spec["containers"]]
        self.kubeconfig: Path | None = None
        self.token_refresh = 0.0
        self.start_time = now()
        self.reported: dict[str, Any] | None = None
        self.transitions: dict[str, tuple[str, str]] = {}

    # -- called from the watch thread -------------------------------------------------------
    def update(self, pod: dict[str, Any]) -> None:
        self.pod = pod
        self.wake.set()

    def forget(self) -> None:
        self.gone = True
        self.wake.set()

    # -- the pod's own loop -----------------------------------------------------------------
    def run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        while not self.agent.stopping.is_set():
            try:
                if self.gone or self.pod["metadata"].get("deletionTimestamp"):
                    self._terminate()
                    return
                self._step()
                self._report()
            except Exception:
                log.exception("Pod step failed pod=%s/%s", self.ns, self.pod_name)
            self.wake.wait(0.2)
            self.wake.clear()
        self._kill_all(grace=5)

    def _step(self) -> None:
        if not self._ensure_kubeconfig():
            return
        policy = self.pod["spec"].get("restartPolicy", "Always")
        pending_init = next((c for c in self.inits if not self._init_done(c)), None)
        if pending_init is not None:
            self._drive(pending_init, "OnFailure" if policy == "Always" else policy)
            return
        for c in self.containers:
            self._drive(c, policy)
            self._probe(c)

    @staticmethod
    def _init_done(c: Container) -> bool:
        return c.terminated is not None and c.terminated.get("exitCode") == 0 and not c.running

    def _drive(self, c: Container, policy: str) -> None:
        if c.proc is not None:
            code = c.proc.poll()
            if code is None:
                if time.monotonic() - c.started_mono > BACKOFF_RESET:
                    c.backoff = BACKOFF_FIRST
                return
            self._record_exit(c, code)
            log.info("Container exited pod=%s/%s container=%s exitCode=%s",
                     self.ns, self.pod_name, c.name, c.terminated and c.terminated["exitCode"])
            c.next_start = time.monotonic() + c.backoff
            c.waited = c.backoff
            c.backoff = min(c.backoff * 2, BACKOFF_MAX)
        if c.terminated is not None:
            code = c.terminated["exitCode"]
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            if not restart:
                return
            if time.monotonic() < c.next_start:
                # The kubelet's words: the pause being waited, and the pod as name_ns(uid).
                c.waiting = ("CrashLoopBackOff", f"back-off {c.waited:.0f}s restarting "
                             f"failed container={c.name} "
                             f"pod={self.pod_name}_{self.ns}({self.uid})")
                return
        self._start(c)

    def _record_exit(self, c: Container, code: int) -> None:
        exit_code = code if code >= 0 else 128 - code
        c.terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": now(),
            "containerID": f"testbed://{c.proc.pid if c.proc else 0}",
        }
        if code < 0:
            c.terminated["signal"] = -code
        c.proc = None
        c.ready = False

    def _start(self, c: Container) -> None:
        spec = c.spec
        if not spec.get("command"):
            c.waiting = ("NoCommand", "the test bed runs containers as local processes and pulls "
                         "no images: set the container's command")
            return
        try:
            env = podenv.resolve(self._pod_with_ips(), spec, self.agent.lookup(self.ns))
            mounts = volumes.prepare(self.pod, spec, self.agent.lookup(self.ns),
                                     self.dir / "volumes" / c.name)
        except (podenv.ConfigError, ApiError) as error:
            c.waiting = ("CreateContainerConfigError", str(error))
            return
        full_env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        full_env.update(
            HOSTNAME=self.pod_name,
            KUBECONFIG=str(self.kubeconfig),
            PYTHONUNBUFFERED="1",
            **{procs.MARKER: str(self.agent.paths.root), POD_MARKER: self.uid},
        )
        full_env.update(env)
        argv = [podenv.expand(a, env) for a in [*spec["command"], *(spec.get("args") or [])]]
        argv = volumes.wrap(argv, mounts, self.dir / "mounts" / c.name)
        workdir = spec.get("workingDir")
        cwd = workdir if workdir and Path(workdir).is_dir() else str(self.dir)
        if c.terminated is not None:
            c.last_state = {"terminated": c.terminated}
            c.restart_count += 1
            c.terminated = None
        try:
            with open(self.dir / f"{c.name}.log", "ab") as out:
                c.proc = subprocess.Popen(
                    argv, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
        except OSError as error:
            c.waiting = None
            c.terminated = {"exitCode": 128, "reason": "StartError", "message": str(error),
                            "startedAt": now(), "finishedAt": now()}
            c.next_start = time.monotonic() + c.backoff
            c.waited = c.backoff
            c.backoff = min(c.backoff * 2, BACKOFF_MAX)
            return
        # Where `python -m testbed kill pod/NS/NAME` finds the process without the API server.
        (self.dir / f"{c.name}.pid").write_text(f"{c.proc.pid}\n")
        c.waiting = None
        c.started_at = now()
        c.started_mono = time.monotonic()
        c.ready = not spec.get("readinessProbe")
        c.next_probe = c.started_mono + float(
            (spec.get("readinessProbe") or {}).get("initialDelaySeconds", 0))
        log.info("Container started pod=%s/%s container=%s pid=%d",
                 self.ns, self.pod_name, c.name, c.proc.pid)

    def _probe(self, c: Container) -> None:
        probe = c.spec.get("readinessProbe")
        if not probe or not c.running or time.monotonic() < c.next_probe:
            return
        c.next_probe = time.monotonic() + float(probe.get("periodSeconds", 10) or 10)
        timeout = float(probe.get("timeoutSeconds", 1) or 1)
        ok = False
        try:
            if probe.get("httpGet"):
                get = probe["httpGet"]
                port = self._port(c, get["port"])
                url = f"http://{self.ip}:{port}{get.get('path', '/')}"
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    ok = 200 <= response.status < 400
            elif probe.get("tcpSocket"):
                port = self._port(c, probe["tcpSocket"]["port"])
                with socket.create_connection((self.ip, port), timeout=timeout):
                    ok = True
            elif probe.get("exec"):
                ok = subprocess.run(probe["exec"]["command"], timeout=timeout,
                                    capture_output=True, check=False).returncode == 0
        except (OSError, subprocess.TimeoutExpired, ValueError):
            ok = False
        c.ready = ok

    @staticmethod
    def _port(c: Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"no container port named {port}")

    def _pod_with_ips(self) -> dict[str, Any]:
        status = dict(self.pod.get("status") or {})
        status.update(podIP=self.ip, hostIP="127.0.0.1")
        return {**self.pod, "status": status}

    def _ensure_kubeconfig(self) -> bool:
        if self.kubeconfig is not None and time.monotonic() < self.token_refresh:
            return True
        spec = self.pod["spec"]
        sa = spec.get("serviceAccountName") or "default"
        try:
            if spec.get("automountServiceAccountToken") is False:
                user: dict[str, str] = {}
            else:
                review = self.agent.rest.request(
                    "POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token",
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                     "spec": {"expirationSeconds": TOKEN_SECONDS,
                              "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                 "name": self.pod_name, "uid": self.uid}}},
                )
                user = {"token": review["status"]["token"]}
        except ApiError as error:
            for c in self.containers:
                c.waiting = ("CreateContainerConfigError",
                             f"service account token for {self.ns}/{sa}: {error}")
            return False
        path = self.dir / "kubeconfig"
        text = pki.kubeconfig(self.agent.rest.server, self.agent.paths.pki / "ca.crt", user)
        text = text.replace("namespace: default", f"namespace: {self.ns}")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(path)
        self.kubeconfig = path
        self.token_refresh = time.monotonic() + TOKEN_SECONDS * 0.8
        return True

    # -- status -----------------------------------------------------------------------------
    def _container_status(self, c: Container) -> dict[str, Any]:
        state: dict[str, Any]
        last_state = c.last_state
        if c.running:
            state = {"running": {"startedAt": c.started_at}}
        elif c.waiting is not None:
            state = {"waiting": {"reason": c.waiting[0], "message": c.waiting[1]}}
            if c.terminated is not None:  # waiting to restart: the exit is the last state
                last_state = {"terminated": c.terminated}
        elif c.terminated is not None:
            state = {"terminated": c.terminated}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        return {
            "name": c.name,
            "image": c.spec.get("image", ""),
            "imageID": "",
            "containerID": f"testbed://{c.proc.pid}" if c.proc else "",
            "ready": c.running and c.ready,
            "started": c.running,
            "restartCount": c.restart_count,
            "state": state,
            "lastState": last_state,
        }

    def _phase(self) -> str:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        if any(not self._init_done(c) for c in self.inits):
            failed = any(c.terminated and c.terminated["exitCode"] != 0 for c in self.inits)
            return "Failed" if failed and policy == "Never" else "Pending"
        if any(c.running for c in self.containers):
            return "Running"
        if policy != "Always" and all(c.terminated for c in self.containers):
            failed = any(c.terminated and c.terminated["exitCode"] != 0 for c in self.containers)
            if policy == "Never" or not failed:
                return "Failed" if failed else "Succeeded"
        if any(c.terminated for c in self.containers):
            return "Running"  # restarting: the kubelet keeps such pods Running
        return "Pending"

    def _report(self) -> None:
        statuses = [self._container_status(c) for c in self.containers]
        ready = all(s["ready"] for s in statuses)
        inits_done = all(self._init_done(c) for c in self.inits)

        def cond(kind: str, ok: bool) -> dict[str, Any]:
            return {"type": kind, "status": "True" if ok else "False"}

        status: dict[str, Any] = {
            "phase": self._phase(),
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "startTime": self.start_time,
            "conditions": [
                cond("PodReadyToStartContainers", self.kubeconfig is not None),
                cond("Initialized", inits_done),
                cond("ContainersReady", ready),
                cond("Ready", ready),
                cond("PodScheduled", True),
            ],
            "containerStatuses": statuses,
        }
        if self.inits:
            status["initContainerStatuses"] = [self._container_status(c) for c in self.inits]
        if status == self.reported:
            return
        stamp = now()
        payload = copy.deepcopy(status)
        for c in payload["conditions"]:
            previous = self.transitions.get(c["type"])
            if previous is None or previous[0] != c["status"]:
                self.transitions[c["type"]] = (c["status"], stamp)
            c["lastTransitionTime"] = self.transitions[c["type"]][1]
        try:
            self.agent.rest.merge_patch(
                f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}/status",
                {"metadata": {"uid": self.uid}, "status": payload},
            )
        except ApiError as error:
            if error.status == 404:
                self.gone = True
                return
            raise
        self.reported = status

    # -- shutdown ---------------------------------------------------------------------------
    def _grace(self) -> float:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(grace)

    def _kill_all(self, grace: float) -> None:
        live = [c.proc.pid for c in [*self.inits, *self.containers] if c.running and c.proc]
        if live:
            procs.terminate(live, grace)
        for c in [*self.inits, *self.containers]:
            if c.proc is not None:
                c.proc.wait()
                self._record_exit(c, c.proc.returncode if c.proc else 0)

    def _terminate(self) -> None:
        if not self.gone:
            log.info("Pod deleting pod=%s/%s grace=%ss", self.ns, self.pod_name, self._grace())
        self._kill_all(self._grace() if not self.gone else 0)
        if not self.gone:
            try:
                self._report()
                self.agent.rest.request(
                    "DELETE", f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}",
                    {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                     "preconditions": {"uid": self.uid}},
                )
            except ApiError as error:
                if error.status not in (404, 409):
                    log.warning("Pod removal failed pod=%s/%s error=%s",
                                self.ns, self.pod_name, error)
        self.agent.ips.release(self.uid)
        self.agent.runners.pop(self.uid, None)
        log.info("Pod removed pod=%s/%s", self.ns, self.pod_name)


class NodeAgent:
    def __init__(self) -> None:
        self.paths = paths()
        p = self.paths.pki
        self.rest = Rest(f"https://127.0.0.1:{ports().apiserver}", str(p / "ca.crt"),
                         str(p / "admin.crt"), str(p / "admin.key"))
        self.ips = PodIPs(pod_network(self.paths.root))
        self.runners: dict[str, PodRunner] = {}
        self.stopping = threading.Event()

    def lookup(self, namespace: str) -> podenv.Lookup:
        def get(kind: str, name: str) -> dict[str, str] | None:
            plural = "secrets" if kind == "Secret" else "configmaps"
            try:
                obj = self.rest.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
            except ApiError as error:
                if error.status == 404:
                    return None
                raise
            if kind == "Secret":
                return podenv.decode_secret(obj.get("data"))
            return dict(obj.get("data") or {})

        return get

    # -- the node ---------------------------------------------------------------------------
    def register(self) -> bool:
        cpus = str(os.cpu_count() or 2)
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {
                "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "conveyor.dev/testbed": "true"}},
            "spec": {},
        }
        try:
            self.rest.request("POST", "/api/v1/nodes", node)
        except ApiError as error:
            if error.status != 409:
                raise
        self.capacity = {"cpu": str(max(int(cpus) * 32, 64)), "memory": "256Gi", "pods": "1000",
                         "ephemeral-storage": "100Gi"}
        self.heartbeat()
        return True

    def heartbeat(self) -> None:
        stamp = now()

        def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": stamp, "lastTransitionTime": self.ready_since}

        self.rest.merge_patch(f"/api/v1/nodes/{NODE_NAME}/status", {"status": {
            "capacity": self.capacity, "allocatable": self.capacity,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": NODE_NAME}],
            "conditions": [
                cond("Ready", "True", "KubeletReady", "the test bed's node agent is running"),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
            ],
            "nodeInfo": {"kubeletVersion": "v1.36.0-testbed", "containerRuntimeVersion":
                         "testbed://processes", "operatingSystem": "linux",
                         "architecture": "amd64", "osImage": "conveyor test bed",
                         "kernelVersion": os.uname().release, "machineID": "", "systemUUID": "",
                         "bootID": "", "kubeProxyVersion": ""},
        }})
        self._renew_lease()

    def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE_NAME}"
        renew = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": NODE_NAME, "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": renew}
        try:
            self.rest.merge_patch(path, {"spec": spec})
        except ApiError as error:
            if error.status != 404:
                raise
            self.rest.request(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": NODE_NAME}, "spec": spec},
            )

    def _heartbeats(self) -> None:
        while not self.stopping.wait(HEARTBEAT_SECONDS):
            try:
                self.heartbeat()
            except Exception:
                log.exception("Node heartbeat failed node=%s", NODE_NAME)

    # -- pods -------------------------------------------------------------------------------
    def _apply(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        runner = self.runners.get(uid)
        if runner is None:
            if pod["status"].get("phase") in ("Succeeded", "Failed") and not \
                    pod["metadata"].get("deletionTimestamp"):
                return  # finished before this agent started; nothing to run
            runner = self.runners[uid] = PodRunner(self, pod)
            runner.start()
        else:
            runner.update(pod)

    def _pods(self) -> None:
        selector = f"spec.nodeName={NODE_NAME}"
        while not self.stopping.is_set():
            try:
                listing = self.rest.get("/api/v1/pods", fieldSelector=selector)
                seen = set()
                for pod in listing["items"]:
                    seen.add(pod["metadata"]["uid"])
                    self._apply(pod)
                for uid, runner in list(self.runners.items()):
                    if uid not in seen:
                        runner.forget()
                version = listing["metadata"]["resourceVersion"]
                for event in self.rest.watch("/api/v1/pods", fieldSelector=selector,
                                             resourceVersion=version, timeoutSeconds=240):
                    if self.stopping.is_set():
                        return
                    kind, obj = event["type"], event["object"]
                    if kind in ("ADDED", "MODIFIED"):
                        self._apply(obj)
                    elif kind == "DELETED":
                        deleted = self.runners.get(obj["metadata"]["uid"])
                        if deleted:
                            deleted.forget()
                    elif kind == "ERROR":
                        break
            except Exception:
                log.exception("Pod watch failed; listing again")
                self.stopping.wait(1)

    def run(self) -> None:
        orphans = procs.marked_processes(self.paths.root, also=POD_MARKER)
        if orphans:
            log.info("Stopping containers of a previous agent pids=%s", orphans)
            procs.terminate(orphans, grace=5)
        self.ready_since = now()
        procs.wait_until(self.register, 60, "node registration", 1)
        log.info("Node registered node=%s", NODE_NAME)
        threading.Thread(target=self._heartbeats, name="heartbeats", daemon=True).start()
        watcher = threading.Thread(target=self._pods, name="pods", daemon=True)
        watcher.start()
        self.stopping.wait()
        for runner in list(self.runners.values()):
            runner.wake.set()
            runner.join(timeout=10)
        log.info("Node agent stopped node=%s", NODE_NAME)


def main() -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    agent = NodeAgent()

    def stop(signum: int, _frame: object) -> None:
        agent.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()


if __name__ == "__main__":
    main()
