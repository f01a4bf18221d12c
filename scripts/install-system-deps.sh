#!/bin/sh
# Installs the Debian packages a target needs, only when they are missing.
#   venv  python3-venv (when the interpreter cannot create a virtual environment)
#   test  swaks (real SMTP client in tests), PostgreSQL server binaries, openssl, curl,
#         isync (mbsync) and dovecot-imapd (the reference server of the IMAP tests)
#   bench postfix (smtp-source and a reference server for the comparison), when possible
set -eu
target="${1:-test}"
missing=""
need() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
pg_found() {
    command -v pg_ctl >/dev/null 2>&1 && return 0
    ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
}
case "$target" in
    venv) missing="python3-venv" ;;
    test)
        need swaks swaks
        need openssl openssl
        need curl curl
        need mbsync isync
        [ -x /usr/sbin/dovecot ] || command -v dovecot >/dev/null 2>&1 || missing="$missing dovecot-imapd"
        pg_found || missing="$missing postgresql"
        ;;
    bench)
        need smtp-source postfix
        ;;
esac
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "missing Debian packages:$missing (run as root or install them)" >&2
        [ "$target" = bench ] && exit 0
        exit 1
    fi
else SUDO=""; fi
echo "installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# postfix must not take port 25 or start a daemon on a test machine.
if [ "$target" = bench ]; then
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections 2>/dev/null || true
fi
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    echo "could not install:$missing" >&2
    [ "$target" = bench ] && exit 0
    exit 1
}
