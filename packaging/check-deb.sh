#!/usr/bin/env bash
# Checks the Debian package that packaging/deb.sh wrote (CI runs it after building the package):
#   1. its contents: the binary, the unit, sysusers, tmpfiles, ccpayout.1.gz, the three
#      completions and the examples — a missing piece fails;
#   2. as root with dpkg: install it, run `ccpayout --version`, `systemd-analyze verify` the
#      installed unit, read the man page and complete `ccpayout sub` in bash; then pay a sandbox
#      batch into /var/lib/ccpayout, upgrade the package to a newer version, remove it and purge
#      it, and after each step find the state store and the configuration untouched.
# Leaves the machine as it found it: a package it installed is purged, a state directory or
# config it created is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(target/debian/ccpayout_*.deb)
if [ "${#debs[@]}" -ne 1 ] || [ ! -f "${debs[0]}" ]; then
  echo "error: expected exactly one target/debian/ccpayout_*.deb (run packaging/deb.sh)" >&2
  exit 1
fi
deb="${debs[0]}"
echo "== contents of $deb"
contents="$(dpkg-deb -c "$deb" | awk '{ print $NF }')"
echo "$contents" | grep -v '/$' | sed 's/^/  /'
missing=0
for path in \
  ./usr/bin/ccpayout \
  ./usr/lib/systemd/system/ccpayout.service \
  ./usr/lib/sysusers.d/ccpayout.conf \
  ./usr/lib/tmpfiles.d/ccpayout.conf \
  ./usr/share/man/man1/ccpayout.1.gz \
  ./usr/share/bash-completion/completions/ccpayout \
  ./usr/share/zsh/vendor-completions/_ccpayout \
  ./usr/share/fish/vendor_completions.d/ccpayout.fish \
  ./usr/share/doc/ccpayout/copyright \
  ./usr/share/doc/ccpayout/examples/ccpayout.toml \
  ./usr/share/doc/ccpayout/examples/payroll.csv \
  ./usr/share/doc/ccpayout/examples/jobs/payroll.toml
do
  if ! grep -qx -- "$path" <<<"$contents"; then
    echo "MISSING from the package: $path" >&2
    missing=1
  fi
done
[ "$missing" = 0 ] || exit 1
for script in postinst prerm postrm; do
  dpkg-deb -I "$deb" "$script" >/dev/null || { echo "MISSING maintainer script: $script" >&2; exit 1; }
done
echo "contents: ok"

if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null 2>&1; then
  echo "notice: not root or no dpkg; the install, upgrade and removal checks are skipped"
  exit 0
fi
if dpkg -s ccpayout >/dev/null 2>&1; then
  echo "notice: a ccpayout package is installed already; the install checks are skipped"
  exit 0
fi

state=/var/lib/ccpayout
config=/etc/ccpayout/ccpayout.toml
created_state=0; [ -e "$state" ] || created_state=1
created_config=0; [ -e "$config" ] || created_config=1
work="$(mktemp -d "${TMPDIR:-/tmp}/ccpayout-deb-check.XXXXXX")"
cleanup() {
  dpkg --purge ccpayout >/dev/null 2>&1 || true
  if [ "$created_state" = 1 ]; then rm -rf -- "$state"; fi
  if [ "$created_config" = 1 ]; then rm -f -- "$config"; fi
  rm -rf -- "$work"
}
trap cleanup EXIT

echo "== dpkg -i $deb"
dpkg -i "$deb"
echo "== ccpayout --version"
/usr/bin/ccpayout --version
unit=/usr/lib/systemd/system/ccpayout.service
if command -v systemd-analyze >/dev/null 2>&1; then
  echo "== systemd-analyze verify $unit"
  version="$(systemd-analyze --version | awk 'NR == 1 { print $2 }')"
  args=(--man=no)
  if [ "${version%%[!0-9]*}" -ge 250 ]; then args+=(--recursive-errors=no); fi
  out="$(SYSTEMD_COLORS=0 systemd-analyze verify "${args[@]}" "$unit" 2>&1)" || { echo "$out"; exit 1; }
  if grep -q 'ccpayout' <<<"$out"; then echo "$out"; exit 1; fi
  echo "verify: ok"
fi
getent passwd ccpayout >/dev/null || { echo "the ccpayout user was not created" >&2; exit 1; }
[ -d /etc/ccpayout ] || { echo "/etc/ccpayout was not created" >&2; exit 1; }

echo "== the man page lists every command"
page="$(zcat /usr/share/man/man1/ccpayout.1.gz)"
for command in $(/usr/bin/ccpayout --help | awk '/^Commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { exit }'); do
  [ "$command" = help ] && continue
  grep -q "^\.SS \"ccpayout $command" <<<"$page" || { echo "the man page has no entry for $command" >&2; exit 1; }
done
if command -v man >/dev/null 2>&1; then
  MANPAGER=cat MANWIDTH=100 man -l /usr/share/man/man1/ccpayout.1.gz 2>/dev/null | grep -q "ccpayout submit"
fi
echo "man: ok"

echo "== bash completes 'ccpayout sub' to submit"
completed="$(bash -c 'source /usr/share/bash-completion/completions/ccpayout
COMP_WORDS=(ccpayout sub); COMP_CWORD=1; COMP_LINE="ccpayout sub"; COMP_POINT=${#COMP_LINE}
_ccpayout ccpayout sub ccpayout; printf "%s\n" "${COMPREPLY[@]}"')"
grep -qx submit <<<"$completed" || { echo "bash completion gave: $completed" >&2; exit 1; }
echo "completion: ok"

echo "== a sandbox batch paid into $state"
cp /usr/share/doc/ccpayout/examples/payroll.csv "$work/payroll.csv"
/usr/bin/ccpayout --state-dir "$state" submit --sandbox "$work/payroll.csv" >"$work/submit.log" 2>&1 || true
[ -f "$state/ccpayout.redb" ] || { cat "$work/submit.log"; echo "no state store in $state" >&2; exit 1; }
if [ "$created_config" = 1 ]; then
  printf '# the operator'"'"'s own configuration\n' >"$config"
fi
batch_line() { /usr/bin/ccpayout --state-dir "$state" status 2>&1 | grep '^payroll-'; }
batch_before="$(batch_line)"
# Byte for byte, taken after the last command that opened the store.
snapshot() { (cd "$state" && find . -type f -print0 | sort -z | xargs -0 sha256sum); sha256sum "$config"; }
before="$(snapshot)"
same() { # same STEP
  [ "$(snapshot)" = "$before" ] || { echo "the state or config changed by: $1" >&2; diff <(echo "$before") <(snapshot) >&2; exit 1; }
  echo "$1: state directory and config intact"
}

echo "== upgrade to a newer version"
rm -rf "$work/pkg"
dpkg-deb -R "$deb" "$work/pkg"
sed -i 's/^Version: \(.*\)$/Version: \1.1/' "$work/pkg/DEBIAN/control"
dpkg-deb --root-owner-group --build "$work/pkg" "$work/newer.deb" >/dev/null
dpkg -i "$work/newer.deb"
dpkg -s ccpayout | grep '^Version:'
same upgrade
[ "$(batch_line)" = "$batch_before" ] || { echo "the upgraded binary does not show the batch as before: $batch_before" >&2; exit 1; }
before="$(snapshot)"

echo "== dpkg -r ccpayout"
dpkg -r ccpayout
same remove
echo "== dpkg -P ccpayout"
dpkg -P ccpayout | tee "$work/purge.log"
same purge
grep -q "/var/lib/ccpayout" "$work/purge.log" || { echo "purge did not say it left the state directory" >&2; exit 1; }
echo "package install, upgrade, remove and purge: ok"
