//! The console's pages, as `maud` templates: pure functions from what a page shows to HTML.
//! `maud` escapes every value spliced into a template, so a hostile `reference` or file name is
//! text, never markup; nothing here writes raw HTML (`PreEscaped`) except the doctype.

use maud::{DOCTYPE, Markup, html};

use crate::batch::diff::BatchDiff;

/// Who is signed in, and the token their forms carry.
pub struct Who<'a> {
    pub user: &'a str,
    pub csrf: &'a str,
    /// Signed in through the trusted proxy (no sign-out here).
    pub proxied: bool,
}

/// The outcome of an action, shown above a page.
pub struct Flash {
    /// `done`, `refused` or `failed`.
    pub kind: &'static str,
    pub text: String,
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub fn enc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every page: the bar with who is signed in, the title, the flash and the body.
pub fn page(title: &str, who: Option<&Who<'_>>, flash: Option<&Flash>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · ccpayout" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                header.top {
                    nav {
                        a.brand href="/" { "ccpayout" }
                        @if who.is_some() {
                            a href="/" { "Overview" }
                            a href="/batches" { "Batches" }
                        }
                    }
                    @if let Some(who) = who {
                        span.who { "Signed in as " strong #who { (who.user) } }
                        @if !who.proxied {
                            form.inline method="post" action="/sign-out" {
                                input type="hidden" name="csrf" value=(who.csrf);
                                button.secondary type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(flash) = flash {
                        div.flash.(flash.kind) #flash role="status" { (flash.text) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A page that only says something (not signed in, not found, refused).
pub fn message(text: &str, hint: Option<&str>) -> Markup {
    html! {
        div.card {
            p #message { (text) }
            @if let Some(hint) = hint { p.muted { (hint) } }
        }
    }
}

/// The sign-in page of a link: who it signs in, and the button that uses it up.
pub fn sign_in(user: &str, token: &str) -> Markup {
    html! {
        div.card {
            p { "This link signs you in as " strong { (user) } ". It works once." }
            form.action method="post" action="/sign-in" {
                input type="hidden" name="token" value=(token);
                button #sign-in type="submit" { "Sign in as " (user) }
            }
        }
    }
}

/// One coin's amount.
pub struct CoinAmount {
    pub coin: String,
    pub amount: String,
}

fn amounts(list: &[CoinAmount]) -> Markup {
    html! {
        @for (i, a) in list.iter().enumerate() {
            @if i > 0 { br; }
            span.mono { (a.amount) " " (a.coin) }
        }
    }
}

/// A line of the batch list.
pub struct BatchLine {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub created: String,
    pub total: u64,
    pub finals: u64,
    pub success: u64,
    pub failed: u64,
    pub refused: usize,
    pub totals: Vec<CoinAmount>,
    /// `approved by alice, bob`, `1 of 2 (alice)`, `not needed`.
    pub approval: String,
    pub waiting: bool,
}

pub fn batch_table(lines: &[BatchLine]) -> Markup {
    html! {
        @if lines.is_empty() {
            p.muted { "No batches yet." }
        } @else {
            div.scroll {
                table #batches {
                    thead { tr {
                        th { "Batch" } th { "State" } th.num { "Final" } th.num { "Paid" } th.num { "Failed" }
                        th.num.hide-narrow { "Refused rows" } th { "Totals" } th { "Approval" } th.hide-narrow { "Taken in" }
                    } }
                    tbody {
                        @for b in lines {
                            tr data-batch=(b.id) {
                                td { a href={ "/batches/" (b.id) } { (b.name) } }
                                td {
                                    (b.state)
                                    @if b.waiting { " " span.pill.warn { "awaiting approval" } }
                                }
                                td.num { (b.finals) "/" (b.total) }
                                td.num { (b.success) }
                                td.num { (b.failed) }
                                td.num.hide-narrow { (b.refused) }
                                td { (amounts(&b.totals)) }
                                td { (b.approval) }
                                td.hide-narrow.muted { (b.created) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A coin's balance against what the batches not yet sent need.
pub struct Need {
    pub coin: String,
    pub balance: Option<String>,
    pub needed: String,
    pub short: bool,
}

/// The overview.
pub struct Overview {
    /// `Sending`, or why not.
    pub sending: Result<String, String>,
    pub kill_switch: bool,
    pub rate: String,
    pub last_success: String,
    pub daemon: String,
    pub waiting: Vec<BatchLine>,
    pub needs: Vec<Need>,
    pub balances_error: Option<String>,
}

pub fn overview(o: &Overview) -> Markup {
    html! {
        div.card.danger[o.sending.is_err()] #sending {
            dl.facts {
                dt { "Sending" }
                dd {
                    @match &o.sending {
                        Ok(text) => span.ok #sending-state { (text) },
                        Err(text) => span.bad #sending-state { (text) },
                    }
                }
                dt { "Rate" } dd { (o.rate) }
                dt { "Last successful API call" } dd { (o.last_success) }
                dt { "Daemon" } dd.muted { (o.daemon) }
            }
            p {
                @if o.kill_switch {
                    a.button #resume href="/resume" { "Resume sending…" }
                } @else {
                    a.button.secondary #pause href="/pause" { "Pause all sending…" }
                }
            }
        }
        h2 { "Waiting for approval" }
        @if o.waiting.is_empty() {
            p.muted #none-waiting { "No batch waits for approval." }
        } @else {
            (batch_table(&o.waiting))
        }
        h2 { "Balances and what open batches still need" }
        @if let Some(e) = &o.balances_error {
            p.warn { "Balances could not be read from CCPayment: " (e) }
        }
        @if o.needs.is_empty() {
            p.muted { "Nothing is waiting to be sent." }
        } @else {
            div.scroll {
                table #needs {
                    thead { tr { th { "Coin" } th.num { "Balance" } th.num { "Needed (not yet sent)" } th {} } }
                    tbody {
                        @for n in &o.needs {
                            tr {
                                td { (n.coin) }
                                td.num { (n.balance.as_deref().unwrap_or("?")) }
                                td.num { (n.needed) }
                                td { @if n.short { span.pill.bad { "short" } } }
                            }
                        }
                    }
                }
            }
            p.muted { "Needed: the amounts of the orders not yet sent, plus the network fees the merchant pays (CCPayment's quotes); “+ fees” where a quote could not be had." }
        }
    }
}

/// One part of a batch that may wait for approval: the plan, or the recipient review.
pub struct ApprovalPart {
    /// `plan` or `recipients`.
    pub part: &'static str,
    pub title: &'static str,
    pub digest: String,
    /// Waiting: the reasons, who gave theirs, how many are needed.
    pub waiting: Option<(Vec<String>, Vec<String>, u32)>,
    /// Approved, or not needed: in words.
    pub done: Option<String>,
}

/// A row of a batch, as the batch page lists it.
pub struct RowLine {
    pub line: u64,
    /// `None` for a row that never became an order.
    pub order_id: String,
    pub is_order: bool,
    pub recipient: String,
    pub coin: String,
    pub chain: String,
    pub amount: String,
    pub fee: String,
    pub receives: String,
    pub status: String,
    pub status_class: &'static str,
    pub reference: String,
    pub problem: String,
    pub held: bool,
}

/// An order held for the recipient review.
pub struct HeldLine {
    pub line: u64,
    pub order_id: String,
    pub amount: String,
    pub coin: String,
    pub payee: String,
    pub destination: String,
    /// Where this payee was paid before; `None`: never paid.
    pub previous: Option<String>,
}

/// One coin of a batch's plan.
pub struct CoinPlan {
    pub coin: String,
    pub rows: u64,
    pub amount: String,
    /// Fees in this coin (charged, or quoted now); `?` when some could not be quoted.
    pub fees: String,
    pub receives: String,
}

/// The batch page.
pub struct BatchPage {
    pub id: String,
    pub state: &'static str,
    pub source: String,
    pub created: String,
    pub signer: String,
    pub total: u64,
    pub finals: u64,
    pub counts: String,
    /// The plan per coin: rows, amounts, fees, what the receivers get.
    pub coins: Vec<CoinPlan>,
    pub parts: Vec<ApprovalPart>,
    pub can_cancel: bool,
    pub diff: Result<Option<BatchDiff>, String>,
    pub deny_hits: Vec<(u64, String, String)>,
    pub held: Vec<HeldLine>,
    pub held_total: usize,
    pub filter: &'static str,
    pub filters: Vec<(&'static str, &'static str, usize)>,
    pub rows: Vec<RowLine>,
    pub page: usize,
    pub pages: usize,
    pub fee_note: Option<String>,
}

fn digest_code(digest: &str) -> Markup {
    let split = digest.len().saturating_sub(6);
    let (head, tail) = digest.split_at(split);
    html! { code.digest { (head) mark { (tail) } } }
}

pub fn batch(b: &BatchPage, who: &Who<'_>) -> Markup {
    html! {
        div.card {
            dl.facts {
                dt { "State" } dd #batch-state { (b.state) }
                dt { "Progress" }
                dd {
                    progress #progress max=(b.total.max(1)) value=(b.finals)
                        data-url={ "/batches/" (b.id) "/progress" } data-page={ "/batches/" (b.id) } data-state=(b.state) {}
                    div #counts { (b.counts) }
                }
                dt { "File" } dd.mono { (b.source) }
                dt { "Taken in" } dd { (b.created) }
                dt { "Signed by" } dd { (b.signer) }
                dt { "Batch id" } dd.mono { (b.id) }
            }
            div.scroll {
                table #plan {
                    thead { tr { th { "Coin" } th.num { "Orders" } th.num { "Amount" } th.num { "Fees" } th.num { "Receivers get" } } }
                    tbody {
                        @for c in &b.coins {
                            tr { td { (c.coin) } td.num { (c.rows) } td.num { (c.amount) } td.num { (c.fees) } td.num { (c.receives) } }
                        }
                    }
                }
            }
            p {
                a.button.secondary #download-csv href={ "/batches/" (b.id) "/report.csv" } download { "Result CSV" }
                " "
                a.button.secondary #download-json href={ "/batches/" (b.id) "/report.json" } download { "Result JSON" }
                @if b.can_cancel {
                    " "
                    a.button.secondary #cancel href={ "/batches/" (b.id) "/cancel" } { "Cancel unsent orders…" }
                }
            }
        }
        @for part in &b.parts {
            div.card.attention[part.waiting.is_some()] .approval data-part=(part.part) {
                h2 { (part.title) }
                p { "Digest " (digest_code(&part.digest)) }
                @if let Some(done) = &part.done {
                    p.ok { (done) }
                }
                @if let Some((reasons, given, needed)) = &part.waiting {
                    p.warn { "Waiting for approval: " (reasons.join("; ")) }
                    p {
                        (given.len()) " of " (needed) " approvals given"
                        @if !given.is_empty() { " (" (given.join(", ")) ")" }
                        "."
                    }
                    form.action method="post" action={ "/batches/" (b.id) "/approve" } {
                        input type="hidden" name="csrf" value=(who.csrf);
                        input type="hidden" name="part" value=(part.part);
                        input type="hidden" name="digest" value=(part.digest);
                        label for={ "confirm-" (part.part) } {
                            "To approve as " strong { (who.user) } ", type the last 6 characters of the digest:"
                        }
                        input.confirm type="text" name="confirm" id={ "confirm-" (part.part) } maxlength="6"
                            autocomplete="off" spellcheck="false" required;
                        button type="submit" id={ "approve-" (part.part) } { "Approve" }
                    }
                }
            }
        }
        @if !b.deny_hits.is_empty() {
            div.card.danger #deny-hits {
                h2 { "Deny-list hits (" (b.deny_hits.len()) ")" }
                ul.plain {
                    @for (line, order_id, text) in &b.deny_hits {
                        li { "line " (line) " " span.mono { (order_id) } ": " (text) }
                    }
                }
            }
        }
        @if b.held_total > 0 {
            div.card #held {
                h2 { "New and changed recipients (" (b.held_total) ")" }
                div.scroll {
                    table {
                        thead { tr { th.num { "Line" } th { "Order" } th.num { "Amount" } th { "Payee" } th { "Pays to" } th { "Paid before to" } } }
                        tbody {
                            @for h in &b.held {
                                tr {
                                    td.num { (h.line) }
                                    td { a.mono href={ "/orders/" (enc(&h.order_id)) } { (h.order_id) } }
                                    td.num { (h.amount) " " (h.coin) }
                                    td { (h.payee) }
                                    td.mono { (h.destination) }
                                    td.mono {
                                        @match &h.previous {
                                            Some(p) => span.warn { (p) },
                                            None => span.muted { "never paid before" },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if b.held_total > b.held.len() {
                    p.muted { "… and " (b.held_total - b.held.len()) " more (see the rows below and the reports)" }
                }
            }
        }
        div.card #diff {
            h2 { "Compared with the previous batch" }
            @match &b.diff {
                Err(why) => p.muted { "No diff: " (why) },
                Ok(None) => p.muted { "No earlier batch of this series." },
                Ok(Some(d)) => (diff(d)),
            }
        }
        h2 #rows-title { "Rows" }
        nav.filters {
            @for (key, label, n) in &b.filters {
                a.current[*key == b.filter] href={ "/batches/" (b.id) "?show=" (key) } data-filter=(key) { (label) " (" (n) ")" }
            }
        }
        @if let Some(note) = &b.fee_note { p.muted { (note) } }
        div.scroll {
            table #rows {
                thead { tr {
                    th.num { "Line" } th { "Order" } th { "Recipient" } th { "Coin" } th.num { "Amount" }
                    th.num { "Fee" } th.num { "Receiver gets" } th { "Verdict" } th { "Reference" } th { "Problem" }
                } }
                tbody {
                    @for r in &b.rows {
                        tr data-status=(r.status) {
                            td.num { (r.line) }
                            td.mono {
                                @if r.is_order { a href={ "/orders/" (enc(&r.order_id)) } { (r.order_id) } }
                                @else { (r.order_id) }
                            }
                            td.mono { (r.recipient) }
                            td { (r.coin) @if !r.chain.is_empty() { " · " (r.chain) } }
                            td.num { (r.amount) }
                            td.num { (r.fee) }
                            td.num { (r.receives) }
                            td {
                                span.pill.(r.status_class) { (r.status) }
                                @if r.held { " " span.pill.warn { "held for review" } }
                            }
                            td.reference { (r.reference) }
                            td { (r.problem) }
                        }
                    }
                }
            }
        }
        @if b.pages > 1 {
            nav.filters {
                @for p in 1..=b.pages {
                    a.current[p == b.page] href={ "/batches/" (b.id) "?show=" (b.filter) "&page=" (p) } { (p) }
                }
            }
        }
    }
}

fn diff(d: &BatchDiff) -> Markup {
    let c = &d.counts;
    html! {
        @if let Some(p) = &d.previous {
            p {
                "With " a href={ "/batches/" (p.batch_id) } { (p.name) } " (" (p.created) "): "
                (c.added) " added, " (c.removed) " removed, "
                span.warn[c.amount_changed > 0] { (c.amount_changed) " amount(s) changed by more than " (d.warn_percent) "%" } ", "
                span.warn[c.destination_changed > 0] { (c.destination_changed) " destination(s) changed" } "."
            }
            @if !d.totals.is_empty() {
                div.scroll { table {
                    thead { tr { th { "Coin" } th.num { "Then" } th.num { "Now" } th.num { "Change" } } }
                    tbody { @for t in &d.totals {
                        tr { td { (t.coin) } td.num { (t.previous) } td.num { (t.now) } td.num { (t.delta) } }
                    } }
                } }
            }
            @if !d.destination_changed.is_empty() {
                h3 { "Destinations changed" }
                ul.plain { @for r in &d.destination_changed {
                    li.warn { "line " (r.line) " " span.mono { (r.order_id) } ": payee " (r.payee) " now " span.mono { (r.new) } " (was " span.mono { (r.old) } ")" }
                } }
            }
            @if !d.amount_changed.is_empty() {
                h3 { "Amounts changed" }
                ul.plain { @for r in &d.amount_changed {
                    li { "line " (r.line) " " span.mono { (r.order_id) } ": " (r.key) ", " (r.old) " → " (r.new) " " (r.coin)
                        @if let Some(pc) = &r.percent { " (" (pc) "%)" } }
                } }
            }
            @if !d.added.is_empty() {
                h3 { "Added" }
                ul.plain { @for r in &d.added { li { "line " (r.line) " " span.mono { (r.order_id) } ": " (r.key) ", " (r.amount) " " (r.coin) } } }
            }
            @if !d.removed.is_empty() {
                h3 { "Removed" }
                ul.plain { @for r in &d.removed { li { "was line " (r.previous_line) " " span.mono { (r.previous_order_id) } ": " (r.key) ", " (r.amount) " " (r.coin) } } }
            }
            @if d.added.len() as u64 != c.added || d.removed.len() as u64 != c.removed {
                p.muted { "Lists show at most " (d.listed_max) " rows of each kind." }
            }
        }
    }
}

/// The order page.
pub struct OrderPage {
    pub batch_id: String,
    pub batch_name: String,
    pub facts: Vec<(&'static str, String)>,
    pub explorer_url: Option<String>,
    pub error: Option<String>,
    pub state_json: String,
}

pub fn order(o: &OrderPage) -> Markup {
    html! {
        div.card {
            p { "Batch " a href={ "/batches/" (o.batch_id) } { (o.batch_name) } }
            dl.facts #order-facts {
                @for (k, v) in &o.facts {
                    dt { (k) } dd { (v) }
                }
                @if let Some(url) = &o.explorer_url {
                    dt { "Transaction" } dd { a href=(url) rel="noreferrer noopener" target="_blank" { (url) } }
                }
            }
        }
        @if let Some(e) = &o.error {
            div.card.danger { h2 { "Last error" } p { (e) } }
        }
        div.card {
            h2 { "Stored state" }
            pre.mono { (o.state_json) }
        }
    }
}

/// A confirmation step before an action: what will happen, and the form that does it.
pub fn confirm(text: &str, action: &str, who: &Who<'_>, button: &str, reason_field: bool) -> Markup {
    html! {
        div.card.attention {
            p #confirm-text { (text) }
            form.action method="post" action=(action) {
                input type="hidden" name="csrf" value=(who.csrf);
                @if reason_field {
                    label for="reason" { "Reason (shown in status and the notice):" }
                    input type="text" name="reason" id="reason" maxlength="200";
                }
                button.danger #confirm type="submit" { (button) }
                a.button.secondary href="/" { "Back" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";

    fn row(reference: &str) -> RowLine {
        RowLine {
            line: 2,
            order_id: "a\"><script>".to_owned(),
            is_order: true,
            recipient: "T".to_owned(),
            coin: "USDT".to_owned(),
            chain: "TRX".to_owned(),
            amount: "1".to_owned(),
            fee: "1".to_owned(),
            receives: "0".to_owned(),
            status: "queued".to_owned(),
            status_class: "muted",
            reference: reference.to_owned(),
            problem: HOSTILE.to_owned(),
            held: false,
        }
    }

    #[test]
    fn every_value_is_escaped_and_ids_are_encoded_in_links() {
        let page = BatchPage {
            id: "b1".to_owned(),
            state: "open",
            source: HOSTILE.to_owned(),
            created: String::new(),
            signer: HOSTILE.to_owned(),
            total: 1,
            finals: 0,
            counts: HOSTILE.to_owned(),
            coins: Vec::new(),
            parts: vec![ApprovalPart {
                part: "plan",
                title: "Plan approval",
                digest: "ab".repeat(32),
                waiting: Some((vec![HOSTILE.to_owned()], vec![HOSTILE.to_owned()], 2)),
                done: None,
            }],
            can_cancel: true,
            diff: Err(HOSTILE.to_owned()),
            deny_hits: vec![(3, HOSTILE.to_owned(), HOSTILE.to_owned())],
            held: Vec::new(),
            held_total: 0,
            filter: "all",
            filters: vec![("all", "All", 1)],
            rows: vec![row(HOSTILE)],
            page: 1,
            pages: 1,
            fee_note: Some(HOSTILE.to_owned()),
        };
        let who = Who {
            user: "<b>eve</b>",
            csrf: "\"><script>",
            proxied: false,
        };
        let html = self::page(HOSTILE, Some(&who), None, batch(&page, &who)).into_string();
        // The only script element is the console's own; no attribute was broken out of.
        assert_eq!(html.matches("<script").count(), 1, "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>eve"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;\""), "{html}");
        assert!(html.contains("href=\"/orders/a%22%3E%3Cscript%3E\""), "{html}");
        // No inline event handler or inline style anywhere (the policy would block them).
        assert!(!html.contains(" onerror=\"") && !html.contains(" onclick") && !html.contains(" style="));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(enc("pay-1~r1"), "pay-1~r1");
        assert_eq!(enc("a/b c?#"), "a%2Fb%20c%3F%23");
        assert_eq!(enc("é"), "%C3%A9");
    }
}
