"""The hub as services: the Dagster daemon, the Dagster UI and the feed API, started together.

One process each, as a deployment runs them (systemd units, containers, a Kubernetes Deployment
per service); this module starts them on one machine with one environment, so every service
works on the same project folder, warehouse and Dagster instance. When one of them stops, the
others are stopped too and the hub exits with its code: a half-running hub is worse than none.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.project import Project

CODE_LOCATION = "enteronce"


@dataclass
class Service:
    name: str
    argv: list[str]
    url: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)


def _script(name: str) -> str:
    """A console script of this environment (dagster-daemon, dagster-webserver, enteronce)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def write_workspace(home: Path) -> Path:
    """The code location, named as in pyproject.toml, for the daemon and the webserver."""
    path = home / "workspace.yaml"
    text = yaml.safe_dump({"load_from": [{"python_module": {
        "module_name": "pipelines.definitions", "location_name": CODE_LOCATION}}]})
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def hub_environment(project: Project, home: Path) -> dict[str, str]:
    """What every service must agree on; passed down explicitly rather than left to each
    service's own defaults (a relative ENTERONCE_CONFIG would mean another folder elsewhere)."""
    env = dict(os.environ)
    env.update({
        "ENTERONCE_CONFIG": str(project.config_dir),
        "ENTERONCE_DATA_DIR": str(project.data_root),
        "ENTERONCE_WAREHOUSE_URL": project.warehouse_url,
        "DAGSTER_HOME": str(home),
    })
    return env


def services(home: Path, *, host: str, port: int, api_port: int | None) -> list[Service]:
    workspace = str(write_workspace(home))
    out = [
        Service("daemon", [_script("dagster-daemon"), "run", "-w", workspace, "--log-level", "warning"]),
        Service("ui", [_script("dagster-webserver"), "-w", workspace, "-h", host, "-p", str(port),
                       "--log-level", "warning"], url=f"http://{host}:{port}"),
    ]
    if api_port is not None:
        out.append(Service("feed API", [_script("enteronce"), "serve", "--host", host, "--port", str(api_port),
                                            "--publish-entries"],
                           url=f"http://{host}:{api_port}/docs"))
    return out


def start(svcs: list[Service], env: dict[str, str], log_dir: Path) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    for svc in svcs:
        log = (log_dir / f"{svc.name.replace(' ', '_')}.log").open("ab")
        svc.process = subprocess.Popen(svc.argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)


def stop(svcs: list[Service], grace: float = 20.0, stragglers: float = 5.0) -> None:
    """SIGTERM every service's process group (the daemon's code server and run workers go
    with it), then SIGKILL what is left after the grace period.

    A service's group can outlive the service: a code server that the webserver or the daemon
    started while it was being stopped never got the SIGTERM, and it waited for heartbeats
    that no longer came (one was found, orphaned, minutes after a test's hub stopped). Each
    group is the service's own session, so whatever is still in it once the service has gone
    is told to stop too, and killed after `stragglers` seconds."""
    running = [s for s in svcs if s.process is not None and s.process.poll() is None]
    for svc in running:
        _signal(svc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for svc in running:
        try:
            svc.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            _signal(svc, signal.SIGKILL)
            svc.process.wait()
    left = [s for s in svcs if s.process is not None and _signal(s, signal.SIGTERM)]
    deadline = time.monotonic() + stragglers
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [s for s in left if _signal(s, 0)]
    for svc in left:
        _signal(svc, signal.SIGKILL)


def _signal(svc: Service, sig: int) -> bool:
    """Signal the service's process group; False when nothing is left in it (0: only ask)."""
    try:
        os.killpg(svc.process.pid, sig)
    except ProcessLookupError:
        return False
    return True


def supervise(svcs: list[Service], poll: float = 1.0) -> tuple[Service, int] | None:
    """Wait until a service exits (returned with its code) or the hub is told to stop (None)."""
    stopping = {"now": False}

    def on_signal(_signum, _frame) -> None:
        stopping["now"] = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping["now"]:
            for svc in svcs:
                code = svc.process.poll()
                if code is not None:
                    return svc, code
            time.sleep(poll)
        return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
