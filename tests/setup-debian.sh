#!/usr/bin/env bash
# Installs what capstan's test suite needs on a fresh Debian machine, when missing:
# OpenSSH's server and client (real sshd test hosts), sudo (`become` tests), ssh-agent
# (part of openssh-client), python3 (the DTR simulator), groff (the man page check). Safe to run again; installs nothing that is present.
set -euo pipefail

need=()
[[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
command -v ssh-keygen >/dev/null && command -v ssh-agent >/dev/null || need+=(openssh-client)
command -v sudo >/dev/null || need+=(sudo)
command -v pgrep >/dev/null || need+=(procps)
# The DTR simulator (tests/sim) runs on the test hosts in python3; `capstan man` is checked
# with groff; the security tests use setpriv and script (util-linux, bsdutils).
command -v python3 >/dev/null || need+=(python3)
command -v groff >/dev/null || need+=(groff-base)
command -v setpriv >/dev/null || need+=(util-linux)
command -v script >/dev/null || need+=(bsdutils)

if ((${#need[@]})); then
    echo "setup: installing ${need[*]}" >&2
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    # openssh-server's postinst would start a system sshd on :22; policy-rc.d says no.
    made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    ((made_policy)) && $SUDO rm -f /usr/sbin/policy-rc.d
fi
mkdir -p /run/sshd 2>/dev/null || true
echo "setup: ok (sshd $(/usr/sbin/sshd -V 2>&1 | head -n 1 || true))" >&2
