"""What archgen's command-line apps share: the Hydra entry point (``hydra_command``), one-line
errors with exit status 2, the user's modules named in ``imports=`` (their block types, strategies
and evaluators registered before a spec is read or a choice checked), and a check of config-group
choices made before Hydra sees them (Hydra's own message is a traceback-sized block)."""

from __future__ import annotations

import importlib
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence, TypeVar

from .errors import SpecError
from .zoo import CONF_DIR

if TYPE_CHECKING:
    from omegaconf import DictConfig

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)
T = TypeVar("T")


def import_user_modules(modules: Any) -> None:
    """Import the modules the command line names in ``imports=`` (they register block types, strategies, evaluators)."""
    if isinstance(modules, str):  # imports=my_pkg.blocks, without the brackets
        modules = [modules]
    for name in modules or []:
        try:
            importlib.import_module(str(name))
        except ImportError as e:
            raise SpecError(f"imports: cannot import {name!r} ({e})") from None


EXIT_IO = 1  # a file could not be written (or read): not the input's fault


def fail(prog: str, message: str) -> NoReturn:
    """Print ``prog: error: message`` on stderr and exit with status 2 (bad input)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


HYDRA_RECORDS = frozenset({"config.yaml", "hydra.yaml", "overrides.yaml"})  # what Hydra writes into <run dir>/.hydra


OUTPUTS = Path("outputs")  # where the commands' run directories go by default, under the working directory


def discard_run_dir(out_dir: Path) -> None:
    """Remove a run directory under ``outputs/`` that holds nothing but what Hydra wrote when the
    run began (its ``.hydra`` records and the job's log): a run stopped by its checks leaves
    nothing behind. Anything else in it, an output or a file of the user's, keeps the whole
    directory, and so does a place outside ``outputs/`` (``hydra.run.dir=`` names a folder that
    may have been there before the run)."""
    try:
        if not out_dir.resolve().is_relative_to(OUTPUTS.resolve()):
            return
        entries = list(out_dir.iterdir())
        records = out_dir / ".hydra"
        if records.is_dir() and not {e.name for e in records.iterdir()} <= HYDRA_RECORDS:
            return
        if not all((e.name == ".hydra" and e.is_dir()) or (e.suffix == ".log" and e.is_file()) for e in entries):
            return
        shutil.rmtree(records, ignore_errors=True)
        for e in entries:
            if e.suffix == ".log":
                e.unlink()
        out_dir.rmdir()
    except OSError:  # gone already, or not ours to remove: it stays
        pass


def path_component(text: Any) -> str:
    """``text`` as one file name: every run of characters other than letters, digits and ``._,=+-``
    becomes ``-``, and no leading dot, so a value on the command line (``space=../../x.yaml``)
    cannot move a run directory out of ``outputs/``."""
    return re.sub(r"[^\w.,=+-]+", "-", str(text)).lstrip(".") or "-"


def register_path_component() -> None:
    """``${path_component:...}`` for the configs' run and sweep directory names."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("path_component"):
        OmegaConf.register_new_resolver("path_component", path_component)


def launch_dir() -> Path:
    """The directory the command was started in, where its settings' relative paths point: with
    ``hydra.job.chdir=true`` the process runs in its run directory instead."""
    try:
        from hydra.utils import get_original_cwd

        return Path(get_original_cwd())
    except (ImportError, ValueError):  # not under Hydra (the library, the tests' composed configs)
        return Path.cwd()


def run_app(prog: str, body: Callable[[], T], interrupted: str, out_dir: Path | None = None) -> T:
    """Run a command's ``body``: bad input is one line and exit 2 (and ``out_dir``, the run directory,
    is removed if the body wrote nothing into it), Ctrl-C one line (``prog: interrupted;
    <interrupted>``) and exit 130, after whatever the body saved."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return body()
    except (SpecError, OmegaConfBaseException) as e:  # a setting the config cannot resolve: ${oc.env:UNSET}, a loop
        if out_dir is not None:
            discard_run_dir(out_dir)
        message = str(e) if isinstance(e, SpecError) else f"config: {str(e).splitlines()[0]}"
        fail(prog, message)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; {interrupted}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except OSError as e:  # a full disk, a read-only folder: each file is whole or absent, the run is partial
        print(f"{prog}: error: {e.strerror or e}{f': {e.filename}' if e.filename else ''}{partial(out_dir)}",
              file=sys.stderr)
        raise SystemExit(EXIT_IO) from None


def partial(out_dir: Path | None) -> str:
    """What a run directory a failed write stopped holds, in words ("" without one)."""
    if out_dir is None or not out_dir.is_dir():
        return ""
    held = sorted(p.name for p in out_dir.iterdir() if p.name != ".hydra" and not p.name.endswith(".tmp"))
    return f"; {out_dir} is partial: it holds only {', '.join(held) or 'nothing'} (each file whole)"


def hydra_command(prog: str, config_name: str, body: Callable[[DictConfig, Path], Any],
                  interrupted: Callable[[Path], str]) -> Callable[[], None]:
    """A command's entry point: Hydra composes ``conf/<config_name>.yaml`` with the command line and
    makes the run directory, then ``body(cfg, run_dir)`` runs under ``run_app`` (bad input is one
    line and exit 2, Ctrl-C one line with ``interrupted(run_dir)`` and exit 130)."""
    import hydra  # imported when a command starts: the library's users do not pay for it
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")
    def entry(cfg: DictConfig) -> None:
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        run_app(prog, lambda: body(cfg, out_dir), interrupted(out_dir), out_dir)

    return entry


def _overrides(argv: Sequence[str]) -> list[Any]:
    """The command line's ``key=value`` overrides as Hydra parses them (none where one is malformed:
    Hydra reports that with its own message)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        return OverridesParser.create().parse_overrides(args)
    except Exception:
        return []


def check_choices(prog: str, argv: Sequence[str], key: str, known: Sequence[str], hint: str = "") -> None:
    """Reject ``key=<unknown>`` (also inside sweeps ``key=a,b``) listing the known values, exit 2."""
    for o in _overrides(argv):
        if o.key_or_group != key or o.package is not None:
            continue
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        for v in values:
            if v not in known:
                fail(prog, f"unknown {key} {v!r}; known: {', '.join(known)}{hint}")


def import_command_line_modules(prog: str, argv: Sequence[str]) -> None:
    """Import the modules ``imports=`` names on the command line before its choices are checked:
    they may register what a choice names (a block type, a strategy, an evaluator). Exit 2 with one
    line where one cannot be imported."""
    for o in _overrides(argv):
        if o.key_or_group == "imports" and o.package is None and not o.is_sweep_override():
            try:
                import_user_modules(o.value())
            except SpecError as e:
                fail(prog, str(e))
