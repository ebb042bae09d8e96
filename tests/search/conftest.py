"""A small, fast search setup: a MobileNetV3-Small space at 64x64, NASWOT on a slice of digits."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from archgen.zoo import CONF_DIR

SPACE = {
    "base": "mbv3_small",
    "knobs": {"input_size": 64},
    "stages": [2, 3],
    "per_block": {"k": [3, 5], "se": [False, True]},
}


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def fast_overrides(space: Path, tmp_path: Path, *extra: str) -> list[str]:
    """Overrides that make a search take seconds: naswot, a slice of digits, few timed runs."""
    return [
        f"space={space}", "evaluator=naswot", "naswot.batch_size=32", "data.limit=200", "latency.repeats=3",
        "latency.warmup=1", "progress=false", f"storage=sqlite:///{tmp_path / 'studies.db'}", "budget_ms=50", *extra,
    ]


@pytest.fixture
def compose_search(tmp_path: Path) -> Callable[..., DictConfig]:
    """The search's Hydra config composed in-process, as ``python -m search`` would."""

    def go(*overrides: str) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("search", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    return go


def run_search(compose_search: Callable[..., DictConfig], out_dir: Path, *overrides: str) -> dict[str, Any]:
    from search.pipeline import run

    return run(compose_search(*overrides), out_dir)


def _postgres_bin(name: str) -> str | None:
    """A PostgreSQL program: on PATH, or in Debian's versioned folder (which is not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]), reverse=True)
    return str(versions[0]) if versions else None


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free local port (initdb in a temporary folder), stopped
    and deleted after the session; its URL."""
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed (pip install -e '.[dev]')")
    # the server refuses to run as root: it runs as the postgres user, in a folder that user owns
    # (outside pytest's tmp_path, whose parents root alone may enter)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres user for the server to run as")
    root = Path(tempfile.mkdtemp(prefix="archgen-pg-"))
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*cmd: str) -> None:
        r = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip() or r.stdout.strip()}")

    try:
        run(initdb, "-D", str(root / "data"), "-U", "archgen", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(pg_ctl, "-D", str(root / "data"), "-l", str(root / "server.log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        try:
            yield f"postgresql://archgen@127.0.0.1:{port}/postgres"
        finally:
            run(pg_ctl, "-D", str(root / "data"), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
