"""What loading pytest_pgtenants, and the plugins its extras bring, costs at pytest start-up.

Prints, from one run (medians of the CPU time, user + system, of fresh processes, with
bytecode cached, in alternating rounds; CPU time rather than wall time because the
figures must hold on a machine busy with other work):

1. ``import pytest`` against ``import pytest`` plus ``import pytest_pgtenants.plugin``: the
   plugin's own import;
2. a one-test pytest run (nothing of the plugin used) with plugin autoloading off, against
   the same run with ``-p pytest_pgtenants``: the plugin's start-up cost;
3. the same run with each third-party pytest plugin the extras install loaded on top
   (``faker`` from factory-boy, ``hypothesispytest`` from hypothesis, ``anyio`` from httpx,
   ``asyncio`` from pytest-asyncio, ``xdist``), and with everything autoloaded, as in an
   ``[all]`` environment.

Plugins that are not installed are left out. No database is involved.

    python benchmarks/plugin_startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

#: Plugin name (for -p no:NAME) -> module to load with -p when autoloading is off.
THIRD_PARTY = {
    "faker": "faker.contrib.pytest.plugin",
    "hypothesispytest": "_hypothesis_pytestplugin",
    "anyio": "anyio.pytest_plugin",
    "asyncio": "pytest_asyncio.plugin",
    "xdist": "xdist.plugin",
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _time(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """CPU seconds (user + system) the process used: steadier than wall time on a busy host."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pgtenants-startup-") as tmp:
        work = Path(tmp)
        (work / "test_trivial.py").write_text("def test_trivial():\n    pass\n")
        (work / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure warm starts, as users get them
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        py = sys.executable
        pytest_run = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        off = {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        cases: dict[str, tuple[list[str], dict[str, str]]] = {
            "import pytest": ([py, "-c", "import pytest"], env),
            "import pytest + pytest_pgtenants.plugin": (
                [py, "-c", "import pytest, pytest_pgtenants.plugin"],
                env,
            ),
            "pytest run, no plugins": (pytest_run, off),
            "pytest run, -p pytest_pgtenants": ([*pytest_run, "-p", "pytest_pgtenants"], off),
        }
        for name, module in THIRD_PARTY.items():
            if _installed(module.split(".")[0]):
                cases[f"  + {name}"] = (
                    [*pytest_run, "-p", "pytest_pgtenants", "-p", module],
                    off,
                )
        cases["pytest run, everything autoloaded"] = (
            [*pytest_run, "-p", "pytest_pgtenants"],
            env,
        )
        for argv, case_env in cases.values():  # warm up: bytecode, file system caches
            _time(argv, case_env, work)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for round_no in range(args.rounds):
            order = list(cases.items())
            if round_no % 2:
                order.reverse()
            for name, (argv, case_env) in order:
                samples[name].append(_time(argv, case_env, work))

    med = {name: statistics.median(values) for name, values in samples.items()}
    print(
        f"python {sys.version.split()[0]}, {args.rounds} rounds, "
        "median CPU time (user + system) of fresh processes"
    )
    base_import = med["import pytest"]
    base_run = med["pytest run, no plugins"]
    plugin_run = med["pytest run, -p pytest_pgtenants"]
    for name, value in med.items():
        if name.startswith("import"):
            extra = f"+{(value - base_import) * 1000:6.0f} ms vs import pytest"
        elif name.startswith("  +"):
            extra = f"+{(value - plugin_run) * 1000:6.0f} ms vs the plugin alone"
        else:
            extra = f"+{(value - base_run) * 1000:6.0f} ms ({value / base_run:.2f}x) vs no plugins"
        print(f"{name:<45} {value * 1000:7.0f} ms   {extra}")


if __name__ == "__main__":
    main()
