#!/bin/sh
# Install the Debian packages among PKG... that are not installed yet: the one apt-get
# incantation of make sysdeps, browserdeps and slurmdeps.
#   usage: sh scripts/apt_install.sh NAME PKG...     (NAME prefixes every message)
# "NAME: all present (PKG...)" and nothing else when none is missing (well under a second);
# otherwise apt-get update + install --no-install-recommends of the missing ones, as root or
# through sudo, with 3 retries per download (Acquire::Retries). Without dpkg-query/apt-get (not
# a Debian system) it says what to install and exits 1; the targets check their tools first.
set -eu
name=$1
shift
if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    echo "$name: no apt-get here (not a Debian system); install $* with your package manager" >&2
    exit 1
fi
missing=$(for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
done)
if [ -z "$missing" ]; then
    echo "$name: all present ($*)"
    exit 0
fi
sudo=$( [ "$(id -u)" = 0 ] || echo sudo )
echo "$name: installing" $missing
$sudo apt-get -o Acquire::Retries=3 update -q >/dev/null
# shellcheck disable=SC2086  # $missing: one word per package
DEBIAN_FRONTEND=noninteractive $sudo apt-get -o Acquire::Retries=3 install -y -q \
    --no-install-recommends $missing >/dev/null
