#!/bin/sh
# Builds the waha-sync virtualenv. Every image RUNs this file and tests/test_images.py runs the
# same file, so the install that is tested is the install that ships.
#
#   install.sh deps VENV LOCK   create VENV, install the locked dependencies (before the source:
#                               this layer is rebuilt only when the lock changes)
#   install.sh app VENV SRC     build the waha-sync wheel from SRC, install it, check, drop pip
#   install.sh wheelhouse DIR LOCK
#                               (on a machine with PyPI) download every wheel the two steps
#                               above need into DIR, for Linux x86_64 CPython 3.11
#
# PYTHON picks the interpreter (default python3). WHEELHOUSE, when set and not empty, is a folder
# of wheels made by the `wheelhouse` step: `deps` and `app` then install from it alone
# (pip --no-index --find-links), with no network; the images pass their WHEELHOUSE build argument.
set -eu

step=${1:?usage: install.sh deps|app|wheelhouse VENV|DIR LOCK|SRC}
venv=${2:?venv (or wheelhouse) path missing}
arg=${3:?lock file or source folder missing}
python=${PYTHON:-python3}

# No download cache anywhere: the images ship no cache, and the builder needs none.
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if [ -n "${WHEELHOUSE:-}" ] && [ "$step" != wheelhouse ]; then
  if [ ! -d "$WHEELHOUSE" ]; then
    echo "install.sh: WHEELHOUSE: not a folder (got $WHEELHOUSE). Try: install.sh wheelhouse" >&2
    exit 2
  fi
  # Environment, not flags: pip passes them on to the isolated build of the waha-sync wheel,
  # whose build backend (setuptools) then comes from the wheelhouse too.
  export PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELHOUSE"
fi

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
  wheelhouse)
    # The images' platform, whatever this machine is: binary wheels for Linux x86_64 CPython
    # 3.11 (--no-deps allows naming the platform; the lock is the whole set anyway), the one
    # source-only package as its sdist, and the build backend of the waha-sync wheel.
    mkdir -p "$venv"
    "$python" -m pip download --quiet --dest "$venv" --no-deps --only-binary=:all: \
      --no-binary=inotify-simple --implementation cp --python-version 3.11 --abi cp311 \
      --abi abi3 --abi none --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux_2_28_x86_64 --platform linux_x86_64 --platform any \
      --requirement "$arg"
    "$python" -m pip download --quiet --dest "$venv" --only-binary=:all: "setuptools>=69"
    ;;
  *)
    echo "install.sh: unknown step '$step' (deps, app or wheelhouse)" >&2
    exit 2
    ;;
esac
