#!/bin/sh
# Builds the waha-sync virtualenv. Every image RUNs this file and tests/test_images.py runs the
# same file, so the install that is tested is the install that ships.
#
#   install.sh deps VENV LOCK   create VENV, install the locked dependencies (before the source:
#                               this layer is rebuilt only when the lock changes)
#   install.sh app VENV SRC     build the waha-sync wheel from SRC, install it, check, drop pip
#
# PYTHON picks the interpreter the venv is made from (default python3).
set -eu

step=${1:?usage: install.sh deps|app VENV LOCK|SRC}
venv=${2:?venv path missing}
arg=${3:?lock file or source folder missing}
python=${PYTHON:-python3}

# No download cache anywhere: the images ship no cache, and the builder needs none.
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

case "$step" in
  deps)
    "$python" -m venv "$venv"
    # Binary wheels only, so no compiler is needed (the slim and WAHA images have none); the
    # one exception, inotify-simple 1.x, is published as source only and is a single pure-Python
    # module. --no-deps: the lock is the whole dependency set, nothing unpinned gets in.
    "$venv/bin/python" -m pip install --quiet --no-deps --only-binary=:all: \
      --no-binary=inotify-simple --requirement "$arg"
    ;;
  app)
    wheels=$(mktemp -d)
    "$venv/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "$arg"
    "$venv/bin/python" -m pip install --quiet --no-deps "$wheels"/waha_sync-*.whl
    rm -rf "$wheels"
    # A dependency missing from the lock fails the build here, not at run time.
    "$venv/bin/python" -m pip check
    # pip (and setuptools, which ensurepip adds on 3.11) are build tools: not in the image.
    "$venv/bin/python" -m pip uninstall --quiet --yes pip setuptools
    ;;
  *)
    echo "install.sh: unknown step '$step' (deps or app)" >&2
    exit 2
    ;;
esac
