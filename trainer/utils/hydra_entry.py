"""What every entry point shares: Hydra's command line, with bad input as one line.

``python scripts/NAME.py key=value ...`` composes ``configs/<config>.yaml`` as ``train.py`` and
``eval.py`` do. Hydra itself reports an unknown key, an unknown option of a group or a malformed
override in several lines and with exit code 1, which a script whose 1 means "a check failed"
(``history.py command=regressions``, ``validate_data.py``) cannot give for a typo. So before
Hydra runs, ``hydra_entry`` composes the config once and turns bad input into one red line and
exit code 2 (``HYDRA_FULL_ERROR=1`` shows the traceback): an unknown key or option, a malformed
override, a required key (``???``) left out, a flag Hydra does not know. ``--help`` prints the
script's docstring above Hydra's own help (the config groups and the composed config).

    from trainer.utils.hydra_entry import hydra_entry
    hydra_entry(main, "history", __doc__)   # instead of main(): train.py, eval.py, scripts/
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# Flags after which Hydra does not run the task (help, config dumps) or composes another way.
NO_CHECK = (
    "help",
    "hydra_help",
    "cfg",
    "info",
    "multirun",
    "config_path",
    "config_name",
    "config_dir",
    "shell_completion",
    "experimental_rerun",
)


def one_line(err: BaseException) -> str:
    """Hydra's and OmegaConf's messages (several lines, a search path) as one line."""
    text = str(err)
    cause = err.__cause__
    if cause is not None and str(cause).splitlines() and str(cause) not in text:
        text += "\n" + str(cause).splitlines()[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith("Config search path") for line in lines):
        lines = lines[: next(i for i, x in enumerate(lines) if x.startswith("Config search path"))]
    out: list[str] = []
    for line in lines:
        if out and out[-1].startswith("Available options") and not line.endswith(":"):
            out[-1] += (" " if out[-1].endswith(":") else ", ") + line
        else:
            out.append(line.rstrip("."))
    return "; ".join(out)


def missing_keys(node: Any, prefix: str = "") -> list[str]:
    """The keys left ``???`` in a plain container (interpolations are not resolved)."""
    if isinstance(node, dict):
        return [m for k, v in node.items() for m in missing_keys(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if node == "???" else []


def check_overrides(config_name: str, overrides: list[str]) -> None:
    """Compose ``config_name`` with ``overrides``; a ConfigError (one line) when it fails."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from trainer.errors import ConfigError

    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from err
    missing = missing_keys(OmegaConf.to_container(cfg, resolve=False))
    if missing:
        raise ConfigError(f"{missing[0]}: required; give {missing[0]}=...")


def hydra_entry(main: Callable[[], Any], config_name: str, doc: str | None = None) -> None:
    """Check the command line (see the module docstring), then hand it to Hydra's ``main``."""
    from hydra._internal.utils import get_args_parser

    from trainer.utils.entry import run_reporting_errors

    args, unknown = get_args_parser().parse_known_args(sys.argv[1:])
    if unknown:
        from trainer.errors import ConfigError

        def refuse() -> None:
            raise ConfigError(
                f"unrecognized arguments: {' '.join(unknown)}; options are key=value "
                f"(Hydra overrides; --help lists them)"
            )

        run_reporting_errors(refuse)
    if args.help and doc:
        print(doc.strip(), end="\n\n")
    if not any(getattr(args, flag, None) for flag in NO_CHECK):
        run_reporting_errors(check_overrides, config_name, list(args.overrides))
    main()
