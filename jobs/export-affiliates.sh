#!/bin/sh
# Example producer for jobs/affiliates.toml: exports last week's affiliate commissions as one
# JSON Lines batch into the job's inbox. Install it as /usr/local/bin/export-affiliates (owned by
# root, not writable by the ccpayout user) and replace query_commissions with the real export.
#
#   export-affiliates --run-date YYYY-MM-DD --out INBOX
#
# The two rules every producer follows:
#
# 1. Write elsewhere, then rename. The batch is written under a name the inbox ignores (a
#    dotfile ending in .tmp, inside the inbox folder so the final rename stays on one
#    filesystem), flushed, and only then renamed to its real name. A rename is atomic, so the
#    daemon never picks up half a file.
# 2. Stable order_ids. Every order_id is made from the week and the affiliate, never from a
#    counter or the clock. Running the export again for the same week (by hand, or after a
#    crash) gives the same order_ids, and ccpayout refuses an order_id it has already paid (the
#    same payload is reported as a duplicate, a changed one as a conflict). That is what makes a
#    re-run harmless: nobody is paid twice.
#
# ccpayout runs it with no stdin, a time limit, and an environment without the app secret; it
# also sets CCPAYOUT_JOB, CCPAYOUT_INBOX and CCPAYOUT_SCHEDULED_AT. Needs GNU date.
set -eu

run_date=
out=
while [ $# -gt 0 ]; do
    case "$1" in
        --run-date) run_date=${2-}; shift 2 ;;
        --out) out=${2-}; shift 2 ;;
        *) echo "export-affiliates: unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [ -z "$run_date" ] || [ -z "$out" ]; then
    echo "usage: export-affiliates --run-date YYYY-MM-DD --out INBOX" >&2
    exit 2
fi

# The job runs on Mondays: the batch is for the ISO week that ended the day before. The same
# run date always gives the same week, hence the same file name and order_ids.
week=$(date -u -d "$run_date - 1 day" +%G-w%V)
final="$out/affiliates-$week.jsonl"
tmp="$out/.affiliates-$week.jsonl.tmp"
trap 'rm -f "$tmp"' EXIT

# Stand-in for the platform's database query: one line per payout,
# "affiliate_id recipient chain amount" (amounts as exact decimal strings, never floats).
query_commissions() {
    printf '%s\n' \
        "1187 TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K TRX 48.20" \
        "1203 0x53a829a58820d8d01370933bae1ca6ed3b8c9b1d POLYGON 12.5" \
        "1244 partner1244@example.com CWALLET 7.75"
}

query_commissions | while read -r affiliate recipient chain amount; do
    printf '{"order_id": "aff-%s-%s", "recipient": "%s", "coin": "USDT", "chain": "%s", "amount": "%s", "reference": "affiliate %s"}\n' \
        "$week" "$affiliate" "$recipient" "$chain" "$amount" "$affiliate"
done >"$tmp"

# Durable before it becomes visible, then visible all at once.
sync "$tmp"
mv -f "$tmp" "$final"
trap - EXIT
echo "wrote $final"
