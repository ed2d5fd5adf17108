#!/usr/bin/env bash
# Checks systemd/ccpayout.service without installing anything and without root:
#   1. `systemd-analyze verify` must pass and print nothing about the ccpayout unit;
#   2. `systemd-analyze security --offline=yes` must rate its overall exposure <= 2.0
#      (override with CCPAYOUT_MAX_EXPOSURE);
#   3. ccpayout.sysusers and ccpayout.tmpfiles are rehearsed in a scratch root directory (as root
#      the resulting owners and modes are checked too).
# Works from any directory, on a machine where ccpayout is not installed and PID 1 is not systemd.
# Without systemd-analyze it prints a notice and exits 0. Called from .ci/run.
set -euo pipefail

case "${BASH_SOURCE[0]}" in
  */*) here="${BASH_SOURCE[0]%/*}" ;;
  *) here=. ;;
esac
here="$(cd "$here" && pwd)"
unit="$here/ccpayout.service"
sysusers="$here/ccpayout.sysusers"
tmpfiles="$here/ccpayout.tmpfiles"
binary=/usr/local/bin/ccpayout
max_exposure="${CCPAYOUT_MAX_EXPOSURE:-2.0}"

# Plain, stable output: no colours, pager or emoji; English messages for the parsing below.
export SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat SYSTEMD_EMOJI=0 LC_ALL=C

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "notice: systemd-analyze not found; skipping the systemd unit checks"
  exit 0
fi

version="$(systemd-analyze --version | awk 'NR == 1 { print $2 }')"
version="${version%%[!0-9]*}"
echo "== systemd-analyze from systemd ${version:-?}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ccpayout-systemd-check.XXXXXX")"
trap 'rm -rf -- "$tmp"' EXIT
case "$tmp" in
  *[!A-Za-z0-9/._-]*) echo "error: scratch dir $tmp has characters a unit file cannot take" >&2; exit 2 ;;
esac

# verify insists that ExecStart=/ExecStartPre= binaries exist and are executable. Check a copy of
# the unit whose binary path points at a stub; everything else (line numbers too) is unchanged.
mkdir "$tmp/bin" "$tmp/units"
printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/ccpayout"
chmod 0755 "$tmp/bin/ccpayout"
sed "s|$binary|$tmp/bin/ccpayout|g" "$unit" >"$tmp/units/ccpayout.service"

# Messages name the copy; show them with the real file and binary paths.
unscratch() { sed -e "s|$tmp/units/ccpayout.service|$unit|g" -e "s|$tmp/bin/ccpayout|$binary|g"; }

failed=0

# --- 1. verify -------------------------------------------------------------------------------
echo "== systemd-analyze verify $unit"
verify_args=(--man=no)
# --recursive-errors=no (systemd >= 250): the exit status reflects this unit only, not warnings
# about the host's own units it pulls in (network-online.target, multi-user.target, ...).
if [ "${version:-0}" -ge 250 ]; then verify_args+=(--recursive-errors=no); fi
set +e
verify_out="$(systemd-analyze verify "${verify_args[@]}" "$tmp/units/ccpayout.service" 2>&1)"
verify_rc=$?
set -e
verify_out="$(printf '%s' "$verify_out" | unscratch)"
ours="$(printf '%s\n' "$verify_out" | grep -i 'ccpayout' || true)"
others="$(printf '%s\n' "$verify_out" | grep -v -i 'ccpayout' | grep -v '^$' || true)"
if [ -n "$others" ]; then
  # Problems of the machine's own units are not ours to fix; show them, do not fail on them.
  echo "note: systemd-analyze verify reported on other units (ignored):"
  printf '%s\n' "$others" | sed 's/^/  /'
fi
if [ "$verify_rc" -ne 0 ] || [ -n "$ours" ]; then
  echo "FAIL: systemd-analyze verify (exit $verify_rc):"
  printf '%s\n' "${ours:-$verify_out}" | sed 's/^/  /'
  failed=1
else
  echo "ok: no warnings about ccpayout.service"
fi

# --- 2. security --------------------------------------------------------------------------------
echo "== systemd-analyze security --offline=yes $unit"
if [ "${version:-0}" -lt 250 ]; then
  echo "notice: systemd ${version:-?} has no 'security --offline' (needs 250 or later); exposure not measured"
else
  set +e
  security_out="$(systemd-analyze security --offline=yes --no-pager "$tmp/units/ccpayout.service" 2>&1)"
  security_rc=$?
  set -e
  security_out="$(printf '%s' "$security_out" | unscratch)"
  exposure="$(printf '%s\n' "$security_out" |
    sed -n 's/.*Overall exposure level for ccpayout\.service: *\([0-9][0-9]*\.[0-9]*\).*/\1/p' | head -n 1)"
  if [ -z "$exposure" ]; then
    echo "FAIL: no overall exposure figure in the output (exit $security_rc):"
    printf '%s\n' "$security_out" | sed 's/^/  /'
    failed=1
  else
    # The settings that still cost exposure (lines ending in their share), then the verdict.
    echo "remaining exposure by setting:"
    printf '%s\n' "$security_out" | awk '$NF ~ /^[0-9]+\.[0-9]+$/ { print "  " $0 }'
    echo "overall exposure: $exposure (limit $max_exposure, systemd ${version:-?})"
    if awk -v e="$exposure" -v m="$max_exposure" 'BEGIN { exit !(e + 0 <= m + 0) }'; then
      echo "ok: exposure $exposure <= $max_exposure"
    else
      echo "FAIL: exposure $exposure > $max_exposure"
      failed=1
    fi
  fi
fi

# --- 3. sysusers + tmpfiles rehearsal ---------------------------------------------------------
echo "== sysusers.d + tmpfiles.d rehearsal in a scratch root"
if ! command -v systemd-sysusers >/dev/null 2>&1 || ! command -v systemd-tmpfiles >/dev/null 2>&1; then
  echo "notice: systemd-sysusers/systemd-tmpfiles not found; skipped"
else
  root="$tmp/root"
  mkdir -p "$root/etc"
  set +e
  sysusers_out="$(systemd-sysusers --root="$root" "$sysusers" 2>&1)"
  sysusers_rc=$?
  tmpfiles_out="$(systemd-tmpfiles --root="$root" --create "$tmpfiles" 2>&1)"
  tmpfiles_rc=$?
  set -e
  uid="$(awk -F: '$1 == "ccpayout" { print $3 }' "$root/etc/passwd" 2>/dev/null || true)"
  gid="$(awk -F: '$1 == "ccpayout" { print $3 }' "$root/etc/group" 2>/dev/null || true)"
  if [ "$sysusers_rc" -ne 0 ] || [ -z "$uid" ] || [ -z "$gid" ]; then
    echo "FAIL: systemd-sysusers (exit $sysusers_rc):"
    printf '%s\n' "$sysusers_out" | sed 's/^/  /'
    failed=1
  elif [ "$(id -u)" -ne 0 ]; then
    # Without root, chown fails (exit 73); any other complaint (syntax, unknown user) is real.
    complaints="$(printf '%s\n' "$tmpfiles_out" | grep -v 'Operation not permitted' | grep -v '^$' || true)"
    if { [ "$tmpfiles_rc" -eq 0 ] || [ "$tmpfiles_rc" -eq 73 ]; } && [ -z "$complaints" ]; then
      echo "ok: both files parse and apply (not root: owners and modes not checked)"
    else
      echo "FAIL: systemd-tmpfiles (exit $tmpfiles_rc):"
      printf '%s\n' "$tmpfiles_out" | sed 's/^/  /'
      failed=1
    fi
  elif [ "$tmpfiles_rc" -ne 0 ] || [ -n "$tmpfiles_out" ]; then
    echo "FAIL: systemd-tmpfiles (exit $tmpfiles_rc):"
    printf '%s\n' "$tmpfiles_out" | sed 's/^/  /'
    failed=1
  else
    bad=0
    expect() { # path mode owner group
      local got
      got="$(stat -c '%a %u %g' "$root$1")"
      if [ "$got" != "$2 $3 $4" ]; then
        echo "FAIL: $1 is '$got', expected '$2 $3 $4'"
        bad=1
      fi
    }
    expect /etc/ccpayout 750 0 "$gid"
    expect /etc/ccpayout/jobs 750 0 "$gid"
    expect /srv/ccpayout 2750 "$uid" "$gid"
    expect /srv/ccpayout/inbox 3770 "$uid" "$gid"
    expect /srv/ccpayout/payroll 3770 "$uid" "$gid"
    expect /srv/ccpayout/affiliates 3770 "$uid" "$gid"
    if [ "$bad" -eq 0 ]; then
      echo "ok: user ccpayout ($uid:$gid); /etc/ccpayout 0750 root:ccpayout; /srv/ccpayout 2750, inboxes 3770 ccpayout:ccpayout"
    else
      failed=1
    fi
  fi
fi

if [ "$failed" -ne 0 ]; then
  echo "systemd/check.sh: FAILED"
  exit 1
fi
echo "systemd/check.sh: passed"
