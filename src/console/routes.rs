//! The console's routes: who is asking ([`Viewer`]), what each page gathers from the store and
//! the daemon, and the four actions, each through the one operator as the signed-in user.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the overview |
//! | `GET /batches` | every batch |
//! | `GET /batches/{id}?show=all\|held\|refused\|failed&page=N` | one batch, its rows |
//! | `GET /batches/{id}/progress` | its counts as JSON (the page's script polls it while it pays) |
//! | `GET /batches/{id}/report.csv`, `report.json` | its result reports, written from the store |
//! | `POST /batches/{id}/approve` | approve the plan or the recipient review |
//! | `GET`, `POST /batches/{id}/cancel` | confirm, then cancel its unsent orders |
//! | `GET`, `POST /pause`, `/resume` | confirm, then the kill switch |
//! | `GET /orders/{order_id}` | one order |
//! | `GET`, `POST /sign-in`, `POST /sign-out` | sessions |
//! | `GET /static/console.css`, `console.js` | the stylesheet and the one script |
//!
//! An action answers with a redirect to the page it was about (303), which shows what the
//! action said once: a reload never sends a form again.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::Markup;
use rust_decimal::Decimal;

use super::Console;
use super::auth::Session;
use super::view::{self, BatchLine, CoinAmount, Flash, Who};
use crate::app::operator::{Reply, Request, Verdict, pause_text};
use crate::engine::PAUSE;
use crate::model::call::WithdrawCall;
use crate::model::record::{Approval, BatchRecord, BatchState, GivenApproval, OrderRecord};
use crate::model::state::StateKind;
use crate::report::{ReportRow, RowStatus};
use crate::rules::amount::parse_api_decimal;
use crate::util::time::rfc3339_ms;

/// The session cookie.
const COOKIE: &str = "ccpayout_session";
/// Rows a batch page lists at once.
const PAGE_ROWS: usize = 500;
/// Held rows the batch page lists in its review table.
const HELD_SHOWN: usize = 100;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// Every page's security headers: the strict policy allows only the console's own script and
/// stylesheet, no inline script, style or event handler, no frames, and forms only to itself.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

type Shared = Arc<Console>;

pub(super) fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/batches", get(batches))
        .route("/batches/{id}", get(batch))
        .route("/batches/{id}/progress", get(progress))
        .route("/batches/{id}/report.csv", get(report_csv))
        .route("/batches/{id}/report.json", get(report_json))
        .route("/batches/{id}/approve", axum::routing::post(approve))
        .route("/batches/{id}/cancel", get(cancel_page).post(cancel))
        .route("/pause", get(pause_page).post(pause))
        .route("/resume", get(resume_page).post(resume))
        .route("/orders/{order_id}", get(order))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", axum::routing::post(sign_out))
        .route(
            "/static/console.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/static/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .fallback(not_found)
        .layer(axum::middleware::map_response(secure))
        .with_state(console)
}

async fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn bare(status: StatusCode, title: &str, text: &str, hint: Option<&str>) -> Response {
    html(status, view::page(title, None, None, view::message(text, hint)))
}

async fn not_found() -> Response {
    bare(StatusCode::NOT_FOUND, "Not found", "There is no such page.", None)
}

/// The signed-in person making a request: from the trusted proxy's header, or from the session
/// cookie. Pages and actions take one; without it they answer 401 (or 403 for the header from
/// an address that is not the proxy's).
pub(super) struct Viewer {
    session: Session,
    csrf: String,
    proxied: bool,
}

impl Viewer {
    fn who(&self) -> Who<'_> {
        Who {
            user: &self.session.user,
            csrf: &self.csrf,
            proxied: self.proxied,
        }
    }

    fn user(&self) -> &str {
        &self.session.user
    }
}

fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical())
}

impl FromRequestParts<Shared> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Viewer, Response> {
        let now = console.clock.now_ms();
        if let Some(name) = &console.settings.trusted_user_header
            && let Some(value) = parts.headers.get(name.as_str())
        {
            let from_proxy = client_ip(parts).is_some_and(|ip| console.settings.trusted_proxies.contains(&ip));
            if !from_proxy {
                tracing::warn!(header = %name, from = ?client_ip(parts), "console: the user header came from an address that is not a trusted proxy; refused");
                return Err(bare(
                    StatusCode::FORBIDDEN,
                    "Refused",
                    "This request names its user in a header that is only accepted from the reverse proxy.",
                    None,
                ));
            }
            let user = value.to_str().unwrap_or("").trim();
            if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
                return Err(bare(
                    StatusCode::FORBIDDEN,
                    "Refused",
                    "The reverse proxy sent no usable user name.",
                    None,
                ));
            }
            let session = Session::from_proxy(user, now);
            let csrf = console.auth.csrf(&session);
            return Ok(Viewer {
                session,
                csrf,
                proxied: true,
            });
        }
        match cookie(&parts.headers).and_then(|id| console.auth.session(&id, now)) {
            Some(session) => {
                let csrf = console.auth.csrf(&session);
                Ok(Viewer {
                    session,
                    csrf,
                    proxied: false,
                })
            }
            None => Err(bare(
                StatusCode::UNAUTHORIZED,
                "Sign in",
                "You are not signed in, or your session ended.",
                Some(if console.settings.trusted_user_header.is_some() {
                    "Open the console through its reverse proxy, or run `ccpayout console` on the server for a sign-in link."
                } else {
                    "Run `ccpayout console` on the server for a one-time sign-in link (it works for 5 minutes)."
                }),
            )),
        }
    }
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}

fn page(title: &str, viewer: &Viewer, flash: Option<&Flash>, body: Markup) -> Response {
    html(StatusCode::OK, view::page(title, Some(&viewer.who()), flash, body))
}

fn store_failed(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "console: the store could not be read");
    bare(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Store error",
        &format!("The state store could not be read: {e}"),
        None,
    )
}

// ------------------------------------------------------------------------------------------
// Sign-in
// ------------------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

async fn sign_in_page(
    State(console): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Query(q): Query<TokenQuery>,
) -> Response {
    match console
        .auth
        .peek(&q.token, addr.ip().to_canonical(), console.clock.now_ms())
    {
        Ok(user) => html(
            StatusCode::OK,
            view::page("Sign in", None, None, view::sign_in(&user, &q.token)),
        ),
        Err(refusal) => {
            console.stats.sign_in(refusal.label());
            bare(refused_status(refusal), "Sign in", refusal.text(), None)
        }
    }
}

fn refused_status(refusal: super::auth::Refusal) -> StatusCode {
    match refusal {
        super::auth::Refusal::Limited => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::FORBIDDEN,
    }
}

async fn sign_in(
    State(console): State<Shared>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let token = form.get("token").map(String::as_str).unwrap_or("");
    match console
        .auth
        .redeem(token, addr.ip().to_canonical(), console.clock.now_ms())
    {
        Ok((id, session)) => {
            console.stats.sign_in("ok");
            tracing::info!(user = %session.user, from = %addr.ip(), "console: signed in");
            let secure = if console
                .settings
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
            {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
            let mut response = Redirect::to("/").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(refusal) => {
            console.stats.sign_in(refusal.label());
            tracing::warn!(from = %addr.ip(), refused = refusal.label(), "console: sign-in refused");
            bare(refused_status(refusal), "Sign in", refusal.text(), None)
        }
    }
}

async fn sign_out(
    State(console): State<Shared>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !console
        .auth
        .csrf_ok(&viewer.session, form.get("csrf").map(String::as_str))
    {
        return forbidden(&console, &viewer, "sign_out");
    }
    if let Some(id) = cookie(&headers) {
        console.auth.sign_out(&id);
    }
    tracing::info!(user = %viewer.user(), "console: signed out");
    let mut response = bare(StatusCode::OK, "Signed out", "You are signed out.", None);
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("ccpayout_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

// ------------------------------------------------------------------------------------------
// Pages
// ------------------------------------------------------------------------------------------

/// Orders of a batch not sent yet: what it still needs.
const UNSENT: [StateKind; 4] = [
    StateKind::Planned,
    StateKind::AwaitingApproval,
    StateKind::Queued,
    StateKind::Deferred,
];

fn count(counts: &BTreeMap<StateKind, u64>, k: StateKind) -> u64 {
    counts.get(&k).copied().unwrap_or(0)
}

fn counts_text(counts: &BTreeMap<StateKind, u64>, refused: usize) -> String {
    let mut parts: Vec<String> = StateKind::ALL
        .iter()
        .filter(|k| count(counts, **k) > 0)
        .map(|k| format!("{} {}", count(counts, *k), k.as_str().replace('_', " ")))
        .collect();
    if refused > 0 {
        parts.push(format!("{refused} refused rows"));
    }
    if parts.is_empty() {
        "no orders".to_owned()
    } else {
        parts.join(", ")
    }
}

fn given_names(given: &[GivenApproval]) -> Vec<String> {
    given.iter().map(|g| g.by.clone()).collect()
}

fn approval_text(approval: &Approval) -> (String, bool) {
    match approval {
        Approval::NotNeeded => ("not needed".to_owned(), false),
        Approval::Required { needed, given, .. } => {
            let names = given_names(given);
            (
                if names.is_empty() {
                    format!("0 of {needed}")
                } else {
                    format!("{} of {needed} ({})", names.len(), names.join(", "))
                },
                true,
            )
        }
        Approval::Approved { by, .. } => {
            let names = given_names(by);
            (
                if names.is_empty() {
                    "approved".to_owned()
                } else {
                    format!("approved by {}", names.join(", "))
                },
                false,
            )
        }
    }
}

impl Console {
    /// The amounts of `batch` per coin (cached: they never change).
    fn batch_totals(&self, batch: &BatchRecord) -> Result<BTreeMap<String, Decimal>, crate::store::StoreError> {
        let key = batch.batch_id.to_string();
        if let Some(t) = self.totals.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(t.clone());
        }
        let mut totals: BTreeMap<String, Decimal> = BTreeMap::new();
        self.store.for_each_batch_order(&batch.batch_id, &mut |o| {
            add(&mut totals, &o.input.coin, o.call.amount());
            Ok(())
        })?;
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, totals.clone());
        Ok(totals)
    }

    fn batch_line(&self, batch: &BatchRecord) -> Result<BatchLine, crate::store::StoreError> {
        let counts = self.store.counts(Some(&batch.batch_id))?;
        let (mut approval, mut waiting) = approval_text(&batch.approval);
        if let Some(review) = &batch.recipients {
            let (text, w) = approval_text(&review.approval);
            if w || review.approval != Approval::NotNeeded {
                approval = format!("{approval}; recipients: {text}");
            }
            waiting |= w;
        }
        waiting &= count(&counts, StateKind::AwaitingApproval) > 0;
        Ok(BatchLine {
            id: batch.batch_id.to_string(),
            name: batch.name.clone(),
            state: batch.state.as_str(),
            created: rfc3339_ms(batch.created_ms),
            total: counts.values().sum(),
            finals: StateKind::finals(&counts),
            success: count(&counts, StateKind::Success),
            failed: count(&counts, StateKind::Failed) + count(&counts, StateKind::Rejected),
            refused: batch.refused.len(),
            totals: coin_amounts(&self.batch_totals(batch)?),
            approval,
            waiting,
        })
    }
}

/// What a batch's orders not sent yet still need: the amounts per coin, how many of them pay
/// each network fee on top (the merchant pays it; by coin, coin id and chain), and the coins
/// whose fees on top the console cannot quote (v1's).
#[derive(Debug, Default)]
pub(super) struct Unsent {
    amounts: BTreeMap<String, Decimal>,
    network_fees: BTreeMap<(String, u64, String), u64>,
    fees_unknown: std::collections::BTreeSet<String>,
}

/// Sums `batch_id`'s unsent orders as the store holds them, one order at a time (a batch may
/// have a million): never a list of them.
pub(super) fn unsent_of(store: &crate::store::Store, batch_id: &str) -> Result<Unsent, crate::store::StoreError> {
    let mut unsent = Unsent::default();
    for kind in UNSENT {
        store.for_each_order_in_state(kind, Some(batch_id), &mut |o| {
            add(&mut unsent.amounts, &o.input.coin, o.call.amount());
            let coin = || o.input.coin.trim().to_ascii_uppercase();
            match &o.call {
                WithdrawCall::Network(r) if r.merchant_pay_network_fee == Some(true) => {
                    *unsent
                        .network_fees
                        .entry((coin(), r.coin_id, r.chain.clone()))
                        .or_default() += 1;
                }
                // The console asks v2's fee quote only: a v1 fee on top is "+ fees".
                WithdrawCall::V1(r) if r.merchant_pays_fee == Some(true) => {
                    unsent.fees_unknown.insert(coin());
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(unsent)
}

/// Adds the stored canonical `amount` to `coin`'s total.
fn add(totals: &mut BTreeMap<String, Decimal>, coin: &str, amount: &str) {
    add_amount(totals, coin, Decimal::from_str_exact(amount.trim()).unwrap_or_default());
}

fn add_amount(totals: &mut BTreeMap<String, Decimal>, coin: &str, amount: Decimal) {
    let entry = totals.entry(coin.trim().to_ascii_uppercase()).or_default();
    *entry = entry.checked_add(amount).unwrap_or(Decimal::MAX);
}

fn coin_amounts(totals: &BTreeMap<String, Decimal>) -> Vec<CoinAmount> {
    totals
        .iter()
        .map(|(coin, amount)| CoinAmount {
            coin: coin.clone(),
            amount: amount.normalize().to_string(),
        })
        .collect()
}

async fn overview(State(console): State<Shared>, viewer: Viewer) -> Response {
    let flash = console.take_flash(&viewer.session);
    match overview_page(&console).await {
        Ok(body) => page("Overview", &viewer, flash.as_ref(), body),
        Err(e) => store_failed(e),
    }
}

async fn overview_page(console: &Console) -> Result<Markup, crate::store::StoreError> {
    let now = console.clock.now_ms();
    let facts = console.live.facts();
    let pause = console.store.get(&PAUSE)?.unwrap_or_default();
    let stored = pause_text(&pause, now);
    let sending = match (&facts.held, stored.trim()) {
        (_, text) if !text.is_empty() => Err(text.to_owned()),
        (Some(reason), _) => Err(format!("held: {reason}")),
        (None, _) => Ok("sending normally".to_owned()),
    };
    let rate = match facts.limited_rate {
        Some(r) => format!(
            "about {r:.1} requests/s: CCPayment's rate limit (11004) lowered it from {} /s",
            facts.configured_rate
        ),
        None => format!("up to {} requests/s (limits.rate_per_second)", facts.configured_rate),
    } + &format!("; {} in flight (up to {})", facts.in_flight, facts.in_flight_limit);
    let last_success = match facts.last_success_ms {
        Some(t) => format!("{} ({} s ago)", rfc3339_ms(t), (now - t).max(0) / 1000),
        None => "none yet since the daemon started".to_owned(),
    };
    let daemon = format!(
        "up since {}; {} batch(es) being paid",
        rfc3339_ms(facts.started_ms),
        facts.batches_paying
    );
    let mut waiting = Vec::new();
    let mut needed: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut fees_unknown = std::collections::BTreeSet::new();
    for batch in console.store.batches()? {
        if batch.state != BatchState::Open {
            continue;
        }
        let line = console.batch_line(&batch)?;
        let unsent = console.unsent(&batch.batch_id).await?;
        for (coin, amount) in &unsent.amounts {
            add_amount(&mut needed, coin, *amount);
        }
        // The network fee comes on top when the merchant pays it: CCPayment's quote, once per
        // coin and chain, times the orders that pay it.
        for ((coin, coin_id, chain), orders) in &unsent.network_fees {
            match console.fee(*coin_id, chain).await {
                Ok(q) if q.coin_id.is_none_or(|c| c == *coin_id) => add_amount(
                    &mut needed,
                    coin,
                    q.amount.checked_mul(Decimal::from(*orders)).unwrap_or(Decimal::MAX),
                ),
                _ => {
                    fees_unknown.insert(coin.clone());
                }
            }
        }
        fees_unknown.extend(unsent.fees_unknown.iter().cloned());
        if line.waiting {
            waiting.push(line);
        }
    }
    let (balances, balances_error) = if needed.is_empty() {
        (Vec::new(), None)
    } else {
        match console.balances().await {
            Ok(b) => (b, None),
            Err(e) => (Vec::new(), Some(e)),
        }
    };
    let needs = needed
        .iter()
        .map(|(coin, need)| {
            let balance = balances
                .iter()
                .find(|b| b.coin.eq_ignore_ascii_case(coin))
                .map(|b| b.available);
            view::Need {
                coin: coin.clone(),
                balance: balance.map(|b| b.normalize().to_string()),
                needed: if fees_unknown.contains(coin) {
                    format!("{} + fees", need.normalize())
                } else {
                    need.normalize().to_string()
                },
                short: balance.is_some_and(|b| b < *need),
            }
        })
        .collect();
    Ok(view::overview(&view::Overview {
        sending,
        kill_switch: pause.kill_switch,
        rate,
        last_success,
        daemon,
        waiting,
        needs,
        balances_error,
    }))
}

async fn batches(State(console): State<Shared>, viewer: Viewer) -> Response {
    let lines = console.store.batches().and_then(|list| {
        let mut list = list;
        list.sort_by_key(|b| std::cmp::Reverse(b.created_ms));
        list.iter()
            .map(|b| console.batch_line(b))
            .collect::<Result<Vec<_>, _>>()
    });
    match lines {
        Ok(lines) => page("Batches", &viewer, None, view::batch_table(&lines)),
        Err(e) => store_failed(e),
    }
}

fn find(console: &Console, viewer: &Viewer, id: &str) -> Result<BatchRecord, Box<Response>> {
    match console.store.find_batch(id) {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(Box::new(not_here(viewer, "There is no such batch."))),
        Err(e) => Err(Box::new(store_failed(e))),
    }
}

/// "Not found", for a signed-in person (the page still says who they are).
fn not_here(viewer: &Viewer, text: &str) -> Response {
    html(
        StatusCode::NOT_FOUND,
        view::page("Not found", Some(&viewer.who()), None, view::message(text, None)),
    )
}

#[derive(serde::Deserialize, Default)]
struct BatchQuery {
    show: Option<String>,
    page: Option<usize>,
}

async fn batch(
    State(console): State<Shared>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<BatchQuery>,
) -> Response {
    let batch = match find(&console, &viewer, &id) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let flash = console.take_flash(&viewer.session);
    match batch_page(&console, &batch, &q).await {
        Ok(p) => page(
            &format!("Batch {}", batch.name),
            &viewer,
            flash.as_ref(),
            view::batch(&p, &viewer.who()),
        ),
        Err(e) => store_failed(e),
    }
}

fn status_class(status: RowStatus) -> &'static str {
    match status {
        RowStatus::Success => "ok",
        RowStatus::Failed | RowStatus::Rejected | RowStatus::Refused | RowStatus::Duplicate => "bad",
        RowStatus::AwaitingApproval | RowStatus::Unknown | RowStatus::Cancelled => "warn",
        _ => "muted",
    }
}

/// Whether the merchant pays the network fee of `order` (the receiver gets the whole amount).
fn merchant_pays(order: &OrderRecord) -> bool {
    match &order.call {
        WithdrawCall::Network(r) => r.merchant_pay_network_fee.unwrap_or(false),
        WithdrawCall::Cwallet(_) => true,
        WithdrawCall::V1(r) => r.merchant_pays_fee.unwrap_or(false),
    }
}

async fn batch_page(
    console: &Console,
    batch: &BatchRecord,
    q: &BatchQuery,
) -> Result<view::BatchPage, crate::store::StoreError> {
    let store = &console.store;
    let counts = store.counts(Some(&batch.batch_id))?;
    // Reading and laying out every row of a big batch takes a while: it is done on this worker
    // with the runtime told so (block_in_place), never holding up the tasks that pay.
    let orders = tokio::task::block_in_place(|| store.batch_orders(&batch.batch_id))?;
    let explorers = store.get(&crate::app::ingest::EXPLORERS)?.unwrap_or_default();

    // Fee quotes for the network orders CCPayment has not charged yet, one per coin and chain.
    let mut quotes: HashMap<(u64, String), Result<super::FeeQuote, String>> = HashMap::new();
    for o in &orders {
        if o.fee.is_none()
            && let WithdrawCall::Network(r) = &o.call
        {
            let key = (r.coin_id, r.chain.clone());
            if let std::collections::hash_map::Entry::Vacant(slot) = quotes.entry(key) {
                slot.insert(console.fee(r.coin_id, &r.chain).await);
            }
        }
    }

    tokio::task::block_in_place(|| lay_out(console, batch, q, counts, orders, explorers, quotes))
}

/// The batch page from its orders and the fee quotes: every row laid out, filtered, counted and
/// paged, the sums per coin, the held recipients and the diff. It awaits nothing and takes a
/// while for a big batch: its caller runs it with the runtime told so.
fn lay_out(
    console: &Console,
    batch: &BatchRecord,
    q: &BatchQuery,
    counts: BTreeMap<StateKind, u64>,
    orders: Vec<OrderRecord>,
    explorers: BTreeMap<String, String>,
    quotes: HashMap<(u64, String), Result<super::FeeQuote, String>>,
) -> Result<view::BatchPage, crate::store::StoreError> {
    let mut rows: Vec<view::RowLine> = Vec::with_capacity(orders.len() + batch.refused.len());
    let mut held = Vec::new();
    let mut held_total = 0;
    let mut coins: BTreeMap<String, CoinSums> = BTreeMap::new();
    for o in &orders {
        let report = ReportRow::from_order(o, &explorers);
        let amount = Decimal::from_str_exact(o.call.amount()).ok();
        let coin_id = match &o.call {
            WithdrawCall::Network(r) => Some(r.coin_id),
            WithdrawCall::Cwallet(r) => Some(r.coin_id),
            WithdrawCall::V1(_) => None,
        };
        // The fee: charged (CCPayment's record), or quoted now; in the coin itself or another.
        let (fee, fee_same_coin, quoted) = match (&o.fee, &o.call) {
            (Some(f), _) => (
                parse_api_decimal(&f.amount),
                coin_id.is_some_and(|c| c == f.coin_id),
                false,
            ),
            (None, WithdrawCall::Network(r)) => match quotes.get(&(r.coin_id, r.chain.clone())) {
                Some(Ok(q)) => (Some(q.amount), q.coin_id.is_none_or(|c| c == r.coin_id), true),
                _ => (None, false, true),
            },
            (None, WithdrawCall::Cwallet(_)) => (Some(Decimal::ZERO), true, false),
            (None, WithdrawCall::V1(_)) => (None, false, true),
        };
        let fee_text = match (fee, &o.fee) {
            (Some(f), Some(charged)) if !fee_same_coin => format!("{} {}", f.normalize(), charged.coin_symbol),
            (Some(f), _) if !fee_same_coin => format!("{} (another coin)", f.normalize()),
            (Some(f), _) => format!(
                "{}{}",
                f.normalize(),
                if quoted && !f.is_zero() { " (quote)" } else { "" }
            ),
            (None, _) => "?".to_owned(),
        };
        // What the receiver gets: the whole amount when the merchant pays the fee or it is in
        // another coin, else the amount less the fee.
        let receives = match (amount, fee) {
            (Some(a), _) if merchant_pays(o) => Some(a),
            (Some(a), Some(f)) if fee_same_coin => Some(a - f),
            (Some(a), Some(_)) => Some(a),
            _ => None,
        };
        let plan = coins.entry(o.input.coin.trim().to_ascii_uppercase()).or_default();
        plan.rows += 1;
        plan.amount += amount.unwrap_or_default();
        match (fee, fee_same_coin) {
            (Some(f), true) => plan.fees += f,
            (Some(_), false) => {}
            (None, _) => plan.unknown = true,
        }
        match receives {
            Some(r) => plan.receives += r,
            None => plan.unknown = true,
        }
        if let Some(review) = &o.review {
            held_total += 1;
            if held.len() < HELD_SHOWN {
                held.push(view::HeldLine {
                    line: o.line,
                    order_id: o.order_id.to_string(),
                    amount: o.input.amount.clone(),
                    coin: o.input.coin.clone(),
                    payee: o.input.payee.clone(),
                    destination: crate::store::destination_of(o).describe(),
                    previous: review.previous.as_ref().map(|p| p.describe()),
                });
            }
        }
        rows.push(view::RowLine {
            line: o.line,
            order_id: report.order_id,
            is_order: true,
            recipient: report.recipient,
            coin: report.coin,
            chain: report.chain,
            amount: report.amount,
            fee: fee_text,
            receives: receives.map_or_else(|| "?".to_owned(), |r| r.normalize().to_string()),
            status: report.status.as_str().to_owned(),
            status_class: status_class(report.status),
            reference: report.reference,
            problem: report.error_message,
            held: o.review.is_some() && o.kind() == StateKind::AwaitingApproval,
        });
    }
    let mut deny_hits = Vec::new();
    for r in &batch.refused {
        let report = ReportRow::from_refused(r);
        if let Some(problem) = r.problems.iter().find(|p| p.contains("deny list")) {
            deny_hits.push((r.line, r.order_id.clone().unwrap_or_default(), problem.clone()));
        }
        rows.push(view::RowLine {
            line: r.line,
            order_id: report.order_id,
            is_order: false,
            recipient: String::new(),
            coin: String::new(),
            chain: String::new(),
            amount: String::new(),
            fee: String::new(),
            receives: String::new(),
            status: report.status.as_str().to_owned(),
            status_class: status_class(report.status),
            reference: String::new(),
            problem: report.error_message,
            held: false,
        });
    }
    rows.sort_by_key(|r| r.line);

    let filter: &'static str = match q.show.as_deref() {
        Some("held") => "held",
        Some("refused") => "refused",
        Some("failed") => "failed",
        _ => "all",
    };
    let keep = |r: &view::RowLine, f: &str| match f {
        "held" => r.held,
        "refused" => !r.is_order,
        "failed" => matches!(r.status.as_str(), "failed" | "rejected"),
        _ => true,
    };
    let filters = [
        ("all", "All"),
        ("held", "Held"),
        ("refused", "Refused"),
        ("failed", "Failed"),
    ]
    .map(|(k, label)| (k, label, rows.iter().filter(|r| keep(r, k)).count()))
    .to_vec();
    let kept: Vec<view::RowLine> = rows.into_iter().filter(|r| keep(r, filter)).collect();
    let pages = kept.len().div_ceil(PAGE_ROWS).max(1);
    let page_no = q.page.unwrap_or(1).clamp(1, pages);
    let shown: Vec<view::RowLine> = kept
        .into_iter()
        .skip((page_no - 1) * PAGE_ROWS)
        .take(PAGE_ROWS)
        .collect();
    let fee_note = quotes
        .values()
        .find_map(|q| q.as_ref().err())
        .map(|e| format!("Some fees could not be quoted by CCPayment ({e}); they show as ?."));

    let mut parts = vec![approval_part(
        "plan",
        "Plan approval",
        &batch.approval,
        &batch.plan_digest,
    )];
    if let Some(review) = &batch.recipients {
        parts.push(approval_part(
            "recipients",
            "Recipient review",
            &review.approval,
            &review.digest,
        ));
    }
    let unsent: u64 = UNSENT.iter().map(|k| count(&counts, *k)).sum();
    Ok(view::BatchPage {
        id: batch.batch_id.to_string(),
        state: batch.state.as_str(),
        source: batch.source.clone(),
        created: rfc3339_ms(batch.created_ms),
        signer: match &batch.signer {
            Some(s) => format!("{} ({} {})", s.principal, s.key_type, s.fingerprint),
            None => "not signed".to_owned(),
        },
        total: counts.values().sum(),
        finals: StateKind::finals(&counts),
        counts: counts_text(&counts, batch.refused.len()),
        coins: coins
            .into_iter()
            .map(|(coin, c)| {
                let maybe = |d: Decimal| {
                    if c.unknown {
                        format!("{} + ?", d.normalize())
                    } else {
                        d.normalize().to_string()
                    }
                };
                view::CoinPlan {
                    coin,
                    rows: c.rows,
                    amount: c.amount.normalize().to_string(),
                    fees: maybe(c.fees),
                    receives: if c.unknown {
                        "?".to_owned()
                    } else {
                        c.receives.normalize().to_string()
                    },
                }
            })
            .collect(),
        parts,
        can_cancel: batch.state == BatchState::Open && unsent > 0,
        diff: diff_of(console, batch, &orders),
        deny_hits,
        held,
        held_total,
        filter,
        filters,
        rows: shown,
        page: page_no,
        pages,
        fee_note,
    })
}

/// One coin's sums on the batch page.
#[derive(Default)]
struct CoinSums {
    rows: u64,
    amount: Decimal,
    fees: Decimal,
    receives: Decimal,
    /// Some fee could not be quoted.
    unknown: bool,
}

fn approval_part(part: &'static str, title: &'static str, approval: &Approval, digest: &str) -> view::ApprovalPart {
    let (waiting, done) = match approval {
        Approval::NotNeeded => (None, Some("No approval needed.".to_owned())),
        Approval::Required { reasons, needed, given } => (Some((reasons.clone(), given_names(given), *needed)), None),
        Approval::Approved { at_ms, by, .. } => (
            None,
            Some(format!(
                "Approved {}{}.",
                rfc3339_ms(*at_ms),
                if by.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", given_names(by).join(", "))
                }
            )),
        ),
    };
    view::ApprovalPart {
        part,
        title,
        digest: digest.to_owned(),
        waiting,
        done,
    }
}

/// The diff of a stored batch to the previous batch of its series taken in before it.
fn diff_of(
    console: &Console,
    batch: &BatchRecord,
    orders: &[OrderRecord],
) -> Result<Option<crate::batch::diff::BatchDiff>, String> {
    use crate::batch::diff::{self, ChosenBy, DiffRow, PreviousBatch};
    let store = &console.store;
    let earlier: Vec<BatchRecord> = store
        .batches()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|b| b.created_ms < batch.created_ms)
        .collect();
    let Some(previous) = diff::previous_of(&batch.source, batch.batch_id.as_str(), &earlier) else {
        return Ok(None);
    };
    let mut index = diff::Previous::default();
    store
        .for_each_batch_order(&previous.batch_id, &mut |o| {
            index.push_order(o);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    let compared = diff::compare(
        index,
        orders.iter().map(|o| DiffRow::of_input(o.line, &o.input)),
        console.warn_percent,
    );
    let named = store
        .orders_at(&previous.batch_id, &compared.wanted())
        .map_err(|e| e.to_string())?;
    Ok(Some(compared.finish(
        diff::series(&batch.source),
        ChosenBy::Series,
        PreviousBatch::of(previous),
        &named,
    )))
}

async fn progress(State(console): State<Shared>, viewer: Viewer, Path(id): Path<String>) -> Response {
    let batch = match find(&console, &viewer, &id) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match console.store.counts(Some(&batch.batch_id)) {
        Ok(counts) => axum::Json(serde_json::json!({
            "state": batch.state.as_str(),
            "total": counts.values().sum::<u64>(),
            "final": StateKind::finals(&counts),
            "text": counts_text(&counts, batch.refused.len()),
        }))
        .into_response(),
        Err(e) => store_failed(e),
    }
}

async fn report_csv(State(console): State<Shared>, viewer: Viewer, Path(id): Path<String>) -> Response {
    tokio::task::block_in_place(|| download(&console, &viewer, &id, false))
}

async fn report_json(State(console): State<Shared>, viewer: Viewer, Path(id): Path<String>) -> Response {
    tokio::task::block_in_place(|| download(&console, &viewer, &id, true))
}

/// The batch's result report, written from the store into the reports folder (as `ccpayout
/// report` does) and sent as a download: a long walk for a big batch, so its callers run it
/// with the runtime told so (block_in_place).
fn download(console: &Console, viewer: &Viewer, id: &str, json: bool) -> Response {
    let batch = match find(console, viewer, id) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let paths = match crate::app::write_reports(&console.reports_dir, &console.store, &batch, console.clock.now_ms()) {
        Ok(p) => p,
        Err(e) => return store_failed(e),
    };
    let (path, content_type) = if json {
        (paths.result_json, "application/json")
    } else {
        (paths.result_csv, "text/csv; charset=utf-8")
    };
    tracing::info!(user = %viewer.user(), batch = %batch.name, file = %path.display(), "console: report downloaded");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let name = path
                .file_name()
                .map_or_else(|| "report".into(), |n| n.to_string_lossy());
            let disposition = format!(
                "attachment; filename=\"{}\"",
                name.replace(|c: char| !c.is_ascii_graphic() || c == '"' || c == '\\', "_")
            );
            let mut response = (StatusCode::OK, bytes).into_response();
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Err(e) => store_failed(format!("cannot read {}: {e}", path.display())),
    }
}

async fn order(State(console): State<Shared>, viewer: Viewer, Path(order_id): Path<String>) -> Response {
    let order = match console.store.order(&order_id) {
        Ok(Some(o)) => o,
        Ok(None) => return not_here(&viewer, "There is no such order."),
        Err(e) => return store_failed(e),
    };
    let batch_name = console
        .store
        .batch(&order.batch_id)
        .ok()
        .flatten()
        .map_or_else(|| order.batch_id.to_string(), |b| b.name);
    let explorers = console
        .store
        .get(&crate::app::ingest::EXPLORERS)
        .ok()
        .flatten()
        .unwrap_or_default();
    let report = ReportRow::from_order(&order, &explorers);
    let mut facts: Vec<(&'static str, String)> = vec![
        ("State", report.status.as_str().to_owned()),
        ("Line", order.line.to_string()),
        ("Amount", format!("{} {}", order.call.amount(), order.input.coin)),
        ("Network", order.input.chain.clone()),
        ("Recipient", order.input.recipient.clone()),
        ("Attempts", order.attempts.to_string()),
        ("Record id", report.record_id.clone()),
        ("Transaction id", report.tx_id.clone()),
        ("Fee", format!("{} {}", report.fee, report.fee_coin)),
        ("Reference", order.input.reference.clone()),
        ("Payee", order.input.payee.clone()),
        ("Memo", order.input.memo.clone()),
        ("Created", report.created_at.clone()),
        ("First sent", report.first_sent_at.clone()),
        ("Final", report.final_at.clone()),
    ];
    if let Some(t) = &report.task {
        facts.push(("Batch withdrawal", format!("{} seq {} {}", t[0], t[1], t[2])));
    }
    if let Some(review) = &order.review {
        facts.push((
            "Recipient review",
            match &review.previous {
                Some(p) => format!("changed destination (paid before to {})", p.describe()),
                None => "new recipient (never paid before)".to_owned(),
            },
        ));
    }
    facts.retain(|(_, v)| !v.trim().is_empty());
    let p = view::OrderPage {
        batch_id: order.batch_id.to_string(),
        batch_name,
        facts,
        explorer_url: Some(report.explorer_url.clone())
            .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
        error: order.error.as_ref().map(|e| match e.code {
            Some(code) => format!("{code}: {}", e.message),
            None => e.message.clone(),
        }),
        state_json: serde_json::to_string_pretty(&order.state).unwrap_or_default(),
    };
    page(&format!("Order {}", order.order_id), &viewer, None, view::order(&p))
}

// ------------------------------------------------------------------------------------------
// Actions: each checks the CSRF token, then asks the one operator as the signed-in user.
// ------------------------------------------------------------------------------------------

fn forbidden(console: &Console, viewer: &Viewer, action: &str) -> Response {
    console.stats.action(action, "forbidden");
    tracing::warn!(user = %viewer.user(), action, "console: a form without its security token was refused");
    html(
        StatusCode::FORBIDDEN,
        view::page(
            "Refused",
            Some(&viewer.who()),
            None,
            view::message(
                "This form's security token is missing or wrong, so nothing was done. Open the page again and repeat.",
                None,
            ),
        ),
    )
}

fn csrf_ok(console: &Console, viewer: &Viewer, form: &HashMap<String, String>) -> bool {
    console
        .auth
        .csrf_ok(&viewer.session, form.get("csrf").map(String::as_str))
}

/// The batch an action on `id` is about, once the form's CSRF token is checked.
fn checked(
    console: &Console,
    viewer: &Viewer,
    form: &HashMap<String, String>,
    action: &str,
    id: &str,
) -> Result<BatchRecord, Box<Response>> {
    if !csrf_ok(console, viewer, form) {
        return Err(Box::new(forbidden(console, viewer, action)));
    }
    find(console, viewer, id)
}

/// Asks the operator and counts the outcome.
async fn act(console: &Console, viewer: &Viewer, action: &str, request: Request) -> Reply {
    tracing::info!(user = %viewer.user(), action, "console action");
    let reply = console.operator.act(request, viewer.user()).await;
    console.stats.action(
        action,
        match reply.verdict {
            Verdict::Done => "done",
            Verdict::Refused => "refused",
            Verdict::Failed => "failed",
        },
    );
    reply
}

fn flash_of(reply: &Reply) -> Flash {
    Flash {
        kind: match reply.verdict {
            Verdict::Done => "done",
            Verdict::Refused => "refused",
            Verdict::Failed => "failed",
        },
        text: reply.shown().trim().to_owned(),
    }
}

/// After an action on a batch: its page, with what the action said above it (redirect after
/// POST: a reload shows the page again and sends nothing).
fn batch_after(console: &Console, viewer: &Viewer, batch_id: &str, flash: Flash) -> Response {
    console.keep_flash(&viewer.session, flash);
    Redirect::to(&format!("/batches/{batch_id}")).into_response()
}

async fn approve(
    State(console): State<Shared>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let batch = match checked(&console, &viewer, &form, "approve", &id) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let shown = form.get("digest").map(|d| d.trim()).unwrap_or("");
    let typed = form
        .get("confirm")
        .map(|d| d.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let current = match form.get("part").map(String::as_str) {
        Some("recipients") => batch.recipients.as_ref().map(|r| r.digest.as_str()),
        _ => Some(batch.plan_digest.as_str()),
    };
    // Refused here, before the operator: counted, and said on the batch's page.
    let refuse = |text: &str| {
        console.stats.action("approve", "refused");
        let flash = Flash {
            kind: "refused",
            text: text.to_owned(),
        };
        batch_after(&console, &viewer, batch.batch_id.as_str(), flash)
    };
    let Some(current) = current else {
        return refuse("This batch has no recipient review.");
    };
    // The approval binds to the full digest the page showed; the 6 characters typed are the
    // person's confirmation that they read it.
    if shown != current {
        return refuse(
            "The plan changed since the page was shown (its digest is not the one you saw); nothing was approved. Read it again.",
        );
    }
    if typed.len() != 6 || !current.to_ascii_lowercase().ends_with(&typed) {
        return refuse("The characters typed are not the last 6 of the digest; nothing was approved.");
    }
    let reply = act(
        &console,
        &viewer,
        "approve",
        Request::Approve {
            batch: batch.batch_id.to_string(),
            digest: current.to_owned(),
            signature: None,
        },
    )
    .await;
    batch_after(&console, &viewer, batch.batch_id.as_str(), flash_of(&reply))
}

async fn cancel_page(State(console): State<Shared>, viewer: Viewer, Path(id): Path<String>) -> Response {
    let batch = match find(&console, &viewer, &id) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let unsent: u64 = match console.store.counts(Some(&batch.batch_id)) {
        Ok(c) => UNSENT.iter().map(|k| count(&c, *k)).sum(),
        Err(e) => return store_failed(e),
    };
    page(
        &format!("Cancel batch {}", batch.name),
        &viewer,
        None,
        view::confirm(
            &format!(
                "Cancel the {unsent} orders of batch {} that have not been sent? Orders already sent are followed to their end; this cannot be undone.",
                batch.name
            ),
            &format!("/batches/{}/cancel", batch.batch_id),
            &viewer.who(),
            "Cancel unsent orders",
            false,
        ),
    )
}

async fn cancel(
    State(console): State<Shared>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let batch = match checked(&console, &viewer, &form, "cancel", &id) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let reply = act(
        &console,
        &viewer,
        "cancel",
        Request::Cancel {
            batch: batch.batch_id.to_string(),
        },
    )
    .await;
    batch_after(&console, &viewer, batch.batch_id.as_str(), flash_of(&reply))
}

async fn pause_page(viewer: Viewer) -> Response {
    page(
        "Pause sending",
        &viewer,
        None,
        view::confirm(
            "Pause all sending? Nothing new is sent to CCPayment, for any batch, until someone resumes; orders already sent are still followed.",
            "/pause",
            &viewer.who(),
            "Pause all sending",
            true,
        ),
    )
}

async fn resume_page(viewer: Viewer) -> Response {
    page(
        "Resume sending",
        &viewer,
        None,
        view::confirm(
            "Resume sending? Queued orders of every batch are sent again.",
            "/resume",
            &viewer.who(),
            "Resume sending",
            false,
        ),
    )
}

async fn pause(State(console): State<Shared>, viewer: Viewer, Form(form): Form<HashMap<String, String>>) -> Response {
    if !csrf_ok(&console, &viewer, &form) {
        return forbidden(&console, &viewer, "pause");
    }
    let reason = form
        .get("reason")
        .map(|r| {
            r.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .filter(|r| !r.is_empty());
    let reply = act(&console, &viewer, "pause", Request::Pause { reason }).await;
    overview_after(&console, &viewer, flash_of(&reply))
}

async fn resume(State(console): State<Shared>, viewer: Viewer, Form(form): Form<HashMap<String, String>>) -> Response {
    if !csrf_ok(&console, &viewer, &form) {
        return forbidden(&console, &viewer, "resume");
    }
    let reply = act(&console, &viewer, "resume", Request::Resume).await;
    overview_after(&console, &viewer, flash_of(&reply))
}

fn overview_after(console: &Console, viewer: &Viewer, flash: Flash) -> Response {
    console.keep_flash(&viewer.session, flash);
    Redirect::to("/").into_response()
}
