"""``python -m mdl ARGS``: runs the ``mdl`` command this package installed."""

from __future__ import annotations

import os
import sys
import sysconfig


def find_mdl_bin() -> str:
    """The ``mdl`` executable installed with this package (the environment's
    scripts directory, else the user scheme's)."""
    exe = "mdl" + (sysconfig.get_config_var("EXE") or "")
    candidates = [sysconfig.get_path("scripts")]
    if sys.version_info >= (3, 10):
        candidates.append(sysconfig.get_path("scripts", sysconfig.get_preferred_scheme("user")))
    for directory in candidates:
        path = os.path.join(directory, exe)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"the `mdl` executable is not in {', '.join(candidates)}: reinstall the package")


def main() -> None:
    mdl = find_mdl_bin()
    if sys.platform == "win32":  # pragma: no cover
        import subprocess

        sys.exit(subprocess.call([mdl, *sys.argv[1:]]))
    os.execv(mdl, [mdl, *sys.argv[1:]])


if __name__ == "__main__":
    main()
