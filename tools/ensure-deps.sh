#!/bin/sh
# Makes sure the Debian packages libfrcnn builds against are present: installs them with apt-get when running as
# root, otherwise prints the exact command to run and fails.
set -u
PACKAGES="build-essential pkg-config libopenblas-dev libstb-dev libcmocka-dev"

have() {
    command -v cc >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 &&
        pkg-config --exists openblas cmocka stb 2>/dev/null
}

have && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-deps: installing $PACKAGES"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq $PACKAGES >/dev/null; } || {
        echo "ensure-deps: apt-get failed; run: apt-get update && apt-get install -y $PACKAGES" >&2
        exit 1
    }
    have && exit 0
    echo "ensure-deps: packages installed but pkg-config still cannot find openblas, cmocka and stb" >&2
    exit 1
fi
echo "ensure-deps: missing build dependencies. Run:" >&2
echo "  sudo apt-get update && sudo apt-get install -y $PACKAGES" >&2
exit 1
