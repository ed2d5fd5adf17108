//! The web console (`[console]`), driven by headless Chromium through chromedriver against a
//! daemon on the sandbox: sign in with the printed link, approve, watch, download; the refusals
//! (a used link, a form without its CSRF token, a second approval by the same person); and a
//! hostile `reference` that must render as text. Without Chromium the browser tests say they are
//! skipped (CI installs it and sets CCPAYOUT_BROWSER_TESTS=required, which makes that a failure).
//! The screenshots land in `target/test-screenshots/`.
//!
//! The checks that need no browser — the console off, loopback only, the proxy's header, the
//! security headers, the metrics — talk HTTP directly.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{Daemon, RECIPIENTS, ccpayout_text, drop_file, layout, paid_once, sandbox_config};
use crate::helpers::TestApi;
use crate::webdriver::{Browser, screenshot_dir};

/// The `[console]` section on a port the system picks, and every batch needing approval.
fn console_config(policy: &str) -> String {
    format!("[console]\nenabled = true\nlisten = \"127.0.0.1:0\"\n[policy]\napproval = \"always\"\n{policy}")
}

fn csv(rows: &[(&str, &str, &str, &str)]) -> String {
    let mut text = String::from("order_id,recipient,coin,chain,amount,reference\n");
    for (id, to, amount, reference) in rows {
        text.push_str(&format!("{id},{to},USDT,TRX,{amount},{reference}\n"));
    }
    text
}

/// `ccpayout console`'s link.
fn sign_in_link(api: &TestApi, state: &Path, config: &Path) -> String {
    let (code, out, err) = ccpayout_text(api, state, config, &["console"]);
    assert_eq!(code, Some(0), "{out}{err}");
    out.lines()
        .find(|l| l.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no link in {out}"))
        .trim()
        .to_owned()
}

/// Waits until the daemon has stored a batch that waits for approval; returns the status text.
fn wait_for_approval(daemon: &Daemon, api: &TestApi, state: &Path, config: &Path) {
    daemon.wait_for("a batch waiting for approval", Duration::from_secs(30), || {
        ccpayout_text(api, state, config, &["status"])
            .1
            .contains("AWAITING APPROVAL")
    });
}

/// The audit trail has an `event` line by `who`.
fn assert_audited(state: &Path, event: &str, who: &str) {
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("\"{event}\"")) && l.contains(&format!("\"by\":\"{who}\""))),
        "no {event} by {who} in:\n{audit}"
    );
}

fn shot(name: &str) -> std::path::PathBuf {
    screenshot_dir().join(format!("console-{name}.png"))
}

/// The plan digest the batch page's approval form carries.
async fn plan_digest(browser: &Browser) -> String {
    let input = browser.find("form[action$='/approve'] input[name=digest]").await;
    input.attribute("value").await.expect("the digest's value")
}

/// The message an action left on the page it redirected to, once it says `needle`: read in one
/// script call each time, so the page before the action (which may have had a message of its
/// own) or the page's own reload when a batch finishes never leaves a stale element behind.
async fn flash(browser: &Browser, needle: &str) -> String {
    let mut text = String::new();
    browser
        .wait_until(
            &format!("a message saying {needle:?}"),
            Duration::from_secs(10),
            async || {
                text = browser
                    .execute(
                        "var e = document.getElementById('flash'); return e ? e.textContent : '';",
                        vec![],
                    )
                    .await
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                text.contains(needle)
            },
        )
        .await;
    text
}

/// The page's text, for messages.
async fn body_text(browser: &Browser) -> String {
    browser.find("body").await.text().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_signs_in_with_the_link_approves_watches_it_pay_and_downloads_the_report() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (_dir, state, config, inbox) = layout(&console_config(""));
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let rows = [
        ("pay-1", RECIPIENTS[0], "12.5", "march salary"),
        ("pay-2", RECIPIENTS[1], "7", "bonus"),
        ("pay-3", RECIPIENTS[2], "3.25", "expenses"),
    ];
    drop_file(&inbox, "payroll-2026-12.csv", &csv(&rows));
    wait_for_approval(&daemon, &api, &state, &config);
    let link = sign_in_link(&api, &state, &config);
    let Some(browser) = Browser::start().await else { return };

    // The link asks to confirm, then signs in as the OS user who ran `ccpayout console`.
    browser.goto(&link).await;
    browser.screenshot(shot("1-sign-in")).await;
    browser.find("#sign-in").await.click().await;
    let who = browser.find("#who").await.text().await;
    assert_eq!(who, ccpayout::util::user::current(), "{}", body_text(&browser).await);
    let cookie = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "ccpayout_session")
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");

    // The overview lists the batch waiting for approval.
    browser.wait_for("#sending-state", Duration::from_secs(5)).await;
    assert_eq!(browser.find("#sending-state").await.text().await, "sending normally");
    browser.screenshot(shot("2-overview")).await;
    let waiting = browser.find_all("#batches tbody tr").await;
    assert_eq!(waiting.len(), 1, "{}", body_text(&browser).await);
    waiting[0].find("a").await.click().await;

    // The batch: every row with its verdict and fee, the digest, the approval form.
    browser.wait_for("#rows", Duration::from_secs(10)).await;
    let shown = browser.find_all("#rows tbody tr").await;
    assert_eq!(shown.len(), 3);
    for row in &shown {
        assert_eq!(row.attribute("data-status").await.as_deref(), Some("awaiting_approval"));
    }
    let text = body_text(&browser).await;
    for (id, _, amount, reference) in rows {
        assert!(
            text.contains(id) && text.contains(amount) && text.contains(reference),
            "{text}"
        );
    }
    let digest = plan_digest(&browser).await;
    assert_eq!(digest.len(), 64);
    let highlighted = browser.find(".approval code.digest mark").await.text().await;
    assert_eq!(highlighted, digest[58..], "the last 6 characters are the ones to type");
    browser.screenshot(shot("3-batch-waiting")).await;
    browser.set_window_size(400, 900).await;
    browser.screenshot(shot("3-batch-waiting-phone")).await;
    browser.set_window_size(1280, 900).await;
    // Dark when the system is: the page's background follows.
    let background = "return getComputedStyle(document.body).backgroundColor;";
    let light = browser.execute(background, vec![]).await;
    browser.prefer_color_scheme("dark").await;
    let dark = browser.execute(background, vec![]).await;
    assert_ne!(light, dark, "the page ignores prefers-color-scheme");
    assert_eq!(dark, "rgb(20, 21, 23)");
    browser.screenshot(shot("3-batch-waiting-dark")).await;
    browser.prefer_color_scheme("light").await;

    // A wrong confirmation approves nothing.
    browser.find("#confirm-plan").await.send_keys("000000").await;
    browser.find("#approve-plan").await.click().await;
    flash(&browser, "not the last 6").await;
    assert!(
        ccpayout_text(&api, &state, &config, &["status"])
            .1
            .contains("AWAITING APPROVAL")
    );

    // Typing the last 6 characters approves exactly that digest, under the signed-in name.
    browser.find("#confirm-plan").await.send_keys(&digest[58..]).await;
    browser.find("#approve-plan").await.click().await;
    let flash = flash(&browser, &format!("{who} approved the plan")).await;
    assert!(
        flash.contains(&digest),
        "the approval binds to the full digest: {flash}"
    );

    // The page follows the payouts by itself until the batch is done, then loads the final
    // page on its own (the mark set on this one is gone).
    let marked = browser
        .execute(
            "var p = document.getElementById('progress'); \
             if (p && p.dataset.state === 'open') { window.beforeDone = true; return true; } return false;",
            vec![],
        )
        .await
        == true;
    browser
        .wait_until("the page to show the batch done", Duration::from_secs(60), async || {
            browser
                .execute(
                    "var e = document.getElementById('batch-state'); return e ? e.textContent : '';",
                    vec![],
                )
                .await
                == "done"
        })
        .await;
    if marked {
        let mark = browser.execute("return typeof window.beforeDone;", vec![]).await;
        assert_eq!(mark, "undefined", "the test did not reload the page; its script did");
    }
    let statuses: Vec<Option<String>> = {
        let mut v = Vec::new();
        for row in browser.find_all("#rows tbody tr").await {
            v.push(row.attribute("data-status").await);
        }
        v
    };
    assert_eq!(statuses, vec![Some("success".to_owned()); 3]);
    browser.screenshot(shot("4-batch-done")).await;
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 3);

    // The result report downloads from the page's link.
    let href = browser.find("#download-csv").await.attribute("href").await.unwrap();
    let got = browser
        .execute(
            "var x = new XMLHttpRequest(); x.open('GET', arguments[0], false); x.send(); \
             return [x.status, x.getResponseHeader('Content-Disposition'), x.responseText];",
            vec![Value::from(href)],
        )
        .await;
    assert_eq!(got[0], 200, "{got}");
    assert!(got[1].as_str().unwrap().starts_with("attachment; filename="), "{got}");
    let report = got[2].as_str().unwrap();
    assert_eq!(
        report.lines().filter(|l| l.contains(",success,")).count(),
        3,
        "{report}"
    );

    // The order page: its record and attempts.
    browser.find("#rows tbody tr a").await.click().await;
    let facts = browser.find("#order-facts").await.text().await;
    assert!(facts.contains("Record id") && facts.contains("Attempts"), "{facts}");
    browser.screenshot(shot("5-order")).await;

    // The audit trail names the approver.
    assert_audited(&state, "approval", &who);
    drop(browser);
    let (code, _, log) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_link_a_form_without_its_csrf_token_and_a_second_approval_by_the_same_person_are_refused() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (_dir, state, config, inbox) = layout(&console_config("approvals_required = 2\n"));
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    drop_file(
        &inbox,
        "bonus-2026-12.csv",
        &csv(&[("b-1", RECIPIENTS[0], "5", "q4"), ("b-2", RECIPIENTS[1], "6", "q4")]),
    );
    wait_for_approval(&daemon, &api, &state, &config);
    let link = sign_in_link(&api, &state, &config);
    let Some(browser) = Browser::start().await else { return };

    browser.goto(&link).await;
    browser.find("#sign-in").await.click().await;
    let who = browser.find("#who").await.text().await;

    // The same link again, from another browser session: refused.
    browser.delete_cookies().await;
    browser.goto(&link).await;
    let message = browser.find("#message").await.text().await;
    assert!(
        message.contains("already used"),
        "{message:?}: {}",
        browser.page_source().await
    );
    assert!(browser.try_find("#sign-in").await.is_none());
    browser.screenshot(shot("6-link-used")).await;
    // Without a session every page asks to sign in.
    let base = link.split("/sign-in").next().unwrap().to_owned();
    browser.goto(&format!("{base}/batches")).await;
    assert!(
        browser.find("#message").await.text().await.contains("not signed in"),
        "{}",
        body_text(&browser).await
    );

    // A fresh link signs in again.
    browser.goto(&sign_in_link(&api, &state, &config)).await;
    browser.find("#sign-in").await.click().await;
    // Signed in (the form's answer has loaded) before going anywhere else.
    browser.find("#who").await;
    browser.goto(&format!("{base}/batches")).await;
    let name = browser.find("#batches tbody tr a").await.text().await;
    browser.find("#batches tbody tr a").await.click().await;
    let digest = plan_digest(&browser).await;

    // The approval form without its CSRF token: refused, nothing approved.
    browser
        .execute(
            "document.querySelector(\"form[action$='/approve'] input[name=csrf]\").remove();",
            vec![],
        )
        .await;
    browser.find("#confirm-plan").await.send_keys(&digest[58..]).await;
    browser.find("#approve-plan").await.click().await;
    let message = browser.find("#message").await.text().await;
    assert!(message.contains("security token is missing"), "{message}");
    browser.screenshot(shot("7-csrf-refused")).await;
    let status = ccpayout_text(&api, &state, &config, &["status", &name]).1;
    assert!(status.contains("0 of 2 given"), "{status}");

    // The first approval counts; the same person's second is refused (maker ≠ checker, quorum
    // of distinct approvers), as on the command line.
    browser.back().await;
    browser.refresh().await;
    browser.find("#confirm-plan").await.send_keys(&digest[58..]).await;
    browser.find("#approve-plan").await.click().await;
    flash(&browser, "1 of 2 approvals given").await;
    browser.find("#confirm-plan").await.send_keys(&digest[58..]).await;
    browser.find("#approve-plan").await.click().await;
    let refused = flash(&browser, "already approved").await;
    assert!(refused.contains(&who), "{refused}");
    browser.find("#flash.refused").await;
    browser.screenshot(shot("8-second-approval-refused")).await;
    let status = ccpayout_text(&api, &state, &config, &["status", &name]).1;
    assert!(status.contains("1 of 2 given"), "{status}");
    assert!(api.sandbox.ledger().payouts.is_empty(), "nothing was paid");

    // Cancel, through its confirmation step, is recorded under the signed-in name.
    browser.find("#cancel").await.click().await;
    browser.find("#confirm").await.click().await;
    flash(&browser, "cancelled 2 unsent orders").await;
    assert_audited(&state, "cancel", &who);
    drop(browser);
    daemon.terminate(Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_holding_a_script_renders_as_text_and_no_script_runs() {
    const HOSTILE: &str = "<script>window.pwned=1;document.title='pwned'</script><img src=x onerror=window.pwned=2>";
    let api = TestApi::start_live(sandbox_config()).await;
    let (_dir, state, config, inbox) = layout(&console_config(""));
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    drop_file(
        &inbox,
        "<b>evil<b>.csv",
        &csv(&[
            ("x-1", RECIPIENTS[0], "5", HOSTILE),
            ("x-2", RECIPIENTS[1], "6", "plain"),
        ]),
    );
    wait_for_approval(&daemon, &api, &state, &config);
    let link = sign_in_link(&api, &state, &config);
    let Some(browser) = Browser::start().await else { return };
    browser.goto(&link).await;
    browser.find("#sign-in").await.click().await;
    browser.find("#batches tbody tr a").await.click().await;
    browser.wait_for("#rows", Duration::from_secs(10)).await;

    // The reference is shown as the text it is.
    let cells = browser.find_all("#rows td.reference").await;
    let mut texts = Vec::new();
    for c in &cells {
        texts.push(c.text().await);
    }
    assert!(texts.iter().any(|t| t == HOSTILE), "{texts:?}");
    assert!(
        body_text(&browser).await.contains("<b>evil<b>"),
        "the file name is text too"
    );
    // No script of the row ran: no global, the title is the console's, no <script> element
    // besides the console's own, and no image element was made of the text.
    let probe = browser
        .execute(
            "return [typeof window.pwned, document.title, document.scripts.length, \
             document.querySelectorAll('#rows img').length];",
            vec![],
        )
        .await;
    assert_eq!(probe[0], "undefined", "{probe}");
    assert!(probe[1].as_str().unwrap().ends_with("· ccpayout"), "{probe}");
    assert_eq!(probe[2], 1, "only the console's own script: {probe}");
    assert_eq!(probe[3], 0, "{probe}");
    // Nothing tried to run and was blocked either: the text never became markup.
    let log = browser.browser_log().await;
    assert!(
        !log.iter().any(|e| e["source"] == "security"),
        "the page had something the policy blocked: {log:?}"
    );
    browser.screenshot(shot("9-hostile-reference")).await;
    drop(browser);
    daemon.terminate(Duration::from_secs(30));
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_off_by_default_and_says_how_to_turn_it_on() {
    let api = TestApi::start_live(sandbox_config()).await;
    // No daemon: only `ccpayout run` serves the console.
    let (_dir, state, config, inbox) = layout("");
    let (code, _, err) = ccpayout_text(&api, &state, &config, &["console"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no daemon runs") && err.contains("[console]"), "{err}");
    // A daemon without [console]: how to enable it.
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let (code, _, err) = ccpayout_text(&api, &state, &config, &["console"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("the web console is off") && err.contains("enabled = true") && err.contains("127.0.0.1:8789"),
        "{err}"
    );
    assert!(!daemon.log().contains("console on"), "{}", daemon.log());
    daemon.terminate(Duration::from_secs(30));

    // Turned on with nothing else said, it answers on loopback only (127.0.0.1:8789).
    let (_dir, state, config, inbox) = layout("[console]\nenabled = true\n");
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    assert_eq!(console_base(&daemon), "http://127.0.0.1:8789");
    let reply = http().get("http://127.0.0.1:8789/").send().await.unwrap();
    assert_eq!(reply.status(), 401, "it answers on loopback");
    if let Some(ip) = outward_address() {
        let reached = std::net::TcpStream::connect_timeout(&(ip, 8789).into(), Duration::from_secs(2));
        assert!(
            reached.is_err(),
            "the console answered on {ip}, an address that is not loopback"
        );
    }
    daemon.terminate(Duration::from_secs(30));

    // A non-loopback address is refused unless a proxy stands in front.
    let (_dir, state, config, _) = layout("[console]\nenabled = true\nlisten = \"0.0.0.0:0\"\n");
    let (code, _, err) = ccpayout_text(&api, &state, &config, &["config", "check"]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("console.listen: 0.0.0.0:0 is not a loopback address"),
        "{err}"
    );
    let (_dir, state, config, _) = layout("[console]\nenabled = true\nlisten = \"0.0.0.0:0\"\nbehind_proxy = true\n");
    let (code, out, err) = ccpayout_text(&api, &state, &config, &["config", "check"]);
    assert_eq!(code, Some(0), "{out}{err}");
}

/// This machine's address on its outward interface, if it has one (a UDP socket's local address
/// after `connect`, which sends nothing).
fn outward_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("10.255.255.255:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// GET `path` as `user`, named by the trusted proxy's header (`X-Remote-User`).
async fn as_user(base: &str, path: &str, user: &str) -> reqwest::Response {
    http()
        .get(format!("{base}{path}"))
        .header("X-Remote-User", user)
        .send()
        .await
        .unwrap()
}

/// The console's address from the daemon's log (`console on http://ADDR/`).
fn console_base(daemon: &Daemon) -> String {
    let mut base = String::new();
    daemon.wait_for("the console's address in the log", Duration::from_secs(10), || {
        let log = daemon.log();
        match log.split("console on ").nth(1).and_then(|rest| rest.split('/').nth(2)) {
            Some(addr) => {
                base = format!("http://{addr}");
                true
            }
            None => false,
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_answers_on_loopback_with_strict_headers_and_trusts_the_user_header_only_from_the_proxy() {
    let api = TestApi::start_live(sandbox_config()).await;
    let (_dir, state, config, inbox) = layout(
        "[console]\nenabled = true\nlisten = \"127.0.0.1:0\"\ntrusted_user_header = \"X-Remote-User\"\n\
         trusted_proxies = [\"127.0.0.1\"]\n",
    );
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let base = console_base(&daemon);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    // `ccpayout console --open` hands the link to the desktop's opener (here a stand-in that
    // writes down what it was given, then renames the file into place: the shell creates a
    // redirect's file before it writes to it, and the test waits for the file to exist).
    let bin = tempfile::tempdir().unwrap();
    let opened = bin.path().join("opened.txt");
    let opener = bin.path().join("xdg-open");
    std::fs::write(
        &opener,
        format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > {0}.part && mv {0}.part {0}\n",
            opened.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = crate::helpers::command(
        &api,
        &[
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "console",
            "--open",
        ],
    )
    .env(
        "PATH",
        format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default()),
    )
    .output()
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{printed}");
    daemon.wait_for("the opener to run", Duration::from_secs(5), || opened.exists());
    let link = std::fs::read_to_string(&opened).unwrap();
    assert!(link.starts_with(&format!("{base}/sign-in?token=")), "{link}");
    assert!(printed.contains(&link), "the link opened is the one printed: {printed}");
    let client = http();

    // Not signed in: 401 with the way in, and the security headers on every answer.
    let reply = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(reply.status(), 401);
    let csp = reply.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(reply.headers()["x-frame-options"], "DENY");
    assert!(reply.text().await.unwrap().contains("ccpayout console"));

    // The proxy's header names the user (this request comes from 127.0.0.1, the proxy's address).
    let reply = as_user(&base, "/", "treasurer").await;
    assert_eq!(reply.status(), 200);
    let page = reply.text().await.unwrap();
    assert!(page.contains("<strong id=\"who\">treasurer</strong>"), "{page}");
    // An action without the token is refused, with it done and recorded under that name.
    let reply = client
        .post(format!("{base}/pause"))
        .header("X-Remote-User", "treasurer")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("reason=audit")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    // The proxied user signs out at the proxy, so the token comes from the pause page's form.
    let pause = as_user(&base, "/pause", "treasurer").await.text().await.unwrap();
    let csrf = pause
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no token in {pause}"))
        .to_owned();
    let reply = client
        .post(format!("{base}/pause"))
        .header("X-Remote-User", "treasurer")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("reason=audit&csrf={csrf}"))
        .send()
        .await
        .unwrap();
    // Done, and answered with a redirect (a reload sends nothing again); the next page shows
    // what it said, once.
    assert_eq!(reply.status(), 303);
    assert_eq!(reply.headers()["location"], "/");
    let status = ccpayout_text(&api, &state, &config, &["status"]).1;
    assert!(status.contains("PAUSED by an operator: audit"), "{status}");
    let next = as_user(&base, "/", "treasurer").await.text().await.unwrap();
    assert!(
        next.contains("id=\"flash\"") && next.contains("submission paused"),
        "{next}"
    );
    assert!(next.contains("id=\"resume\""), "the overview offers resume: {next}");
    let again = as_user(&base, "/", "treasurer").await.text().await.unwrap();
    assert!(!again.contains("id=\"flash\""), "shown once: {again}");
    assert_audited(&state, "pause", "treasurer");

    // Sign-in attempts with made-up tokens are limited.
    let mut last = 0;
    for _ in 0..7 {
        last = client
            .post(format!("{base}/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=00")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
    }
    assert_eq!(last, 429);

    daemon.terminate(Duration::from_secs(30));

    // The header from an address that is not the proxy's is refused.
    let (_dir, state, config, inbox) = layout(
        "[console]\nenabled = true\nlisten = \"127.0.0.1:0\"\ntrusted_user_header = \"X-Remote-User\"\n\
         trusted_proxies = [\"10.1.2.3\"]\n",
    );
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let base = console_base(&daemon);
    let reply = as_user(&base, "/", "treasurer").await;
    assert_eq!(reply.status(), 403);
    daemon.terminate(Duration::from_secs(30));
}

/// Every `approve with: ccpayout approve NAME --digest D` line of `status NAME`, as arguments.
fn approve_commands(status: &str) -> Vec<Vec<String>> {
    status
        .lines()
        .filter_map(|l| l.trim().strip_prefix("approve with: ccpayout "))
        .map(|c| c.split(' ').map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_page_shows_changed_recipients_beside_the_old_ones_deny_list_hits_the_diff_and_filters() {
    use crate::helpers::TRON_ADDRESS;
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, format!("# sanctioned\n{TRON_ADDRESS}\n")).unwrap();
    let (_dir, state, config, inbox) = layout(&format!(
        "[console]\nenabled = true\nlisten = \"127.0.0.1:0\"\ntrusted_user_header = \"X-Remote-User\"\n\
         trusted_proxies = [\"127.0.0.1\"]\n[policy]\napproval = \"always\"\nchanged_payee_address = \"hold\"\n\
         deny_lists = [{deny:?}]\n"
    ));
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let base = console_base(&daemon);
    let get = async |path: &str| {
        let reply = as_user(&base, path, "auditor").await;
        (reply.status().as_u16(), reply.text().await.unwrap())
    };
    let ids = async || {
        let (_, page) = get("/batches").await;
        page.split("data-batch=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().to_owned())
            .collect::<Vec<String>>()
    };
    let payees = |rows: &[(&str, &str, &str, &str)]| {
        let mut text = String::from("order_id,recipient,coin,chain,amount,payee\n");
        for (id, to, amount, payee) in rows {
            text.push_str(&format!("{id},{to},USDT,TRX,{amount},{payee}\n"));
        }
        text
    };

    // Last month: paid, approved on the command line.
    drop_file(
        &inbox,
        "payroll-2026-11.csv",
        &payees(&[
            ("n-1", RECIPIENTS[0], "10", "emp-1"),
            ("n-2", RECIPIENTS[1], "20", "emp-2"),
        ]),
    );
    wait_for_approval(&daemon, &api, &state, &config);
    let first = ids().await.remove(0);
    let status = ccpayout_text(&api, &state, &config, &["status", &first]).1;
    for command in approve_commands(&status) {
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        let (code, out, err) = ccpayout_text(&api, &state, &config, &args);
        assert_eq!(code, Some(0), "{out}{err}");
    }
    daemon.wait_for("last month paid", Duration::from_secs(60), || {
        ccpayout_text(&api, &state, &config, &["status", &first])
            .1
            .contains("Done")
    });

    // This month: emp-1 has a new address, emp-2's amount grew by half, one row is sanctioned.
    drop_file(
        &inbox,
        "payroll-2026-12.csv",
        &payees(&[
            ("d-1", RECIPIENTS[2], "10", "emp-1"),
            ("d-2", RECIPIENTS[1], "30", "emp-2"),
            ("d-3", TRON_ADDRESS, "5", "emp-3"),
        ]),
    );
    let mut second = String::new();
    daemon.wait_for("this month's batch", Duration::from_secs(30), || {
        second = ccpayout_text(&api, &state, &config, &["status"])
            .1
            .lines()
            .find(|l| l.starts_with("payroll-2026-12") && l.contains("AWAITING APPROVAL"))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .unwrap_or_default();
        !second.is_empty()
    });
    let (code, page) = get(&format!("/batches/{second}")).await;
    assert_eq!(code, 200, "{page}");
    // The changed destination beside the old one, in the review table and in the diff.
    let held = page
        .split("id=\"held\"")
        .nth(1)
        .expect("the held table")
        .split("</table>")
        .next()
        .unwrap();
    assert!(
        held.contains("emp-1") && held.contains(RECIPIENTS[2]) && held.contains(RECIPIENTS[0]),
        "{held}"
    );
    assert!(page.contains("Recipient review"), "its own approval part");
    assert!(
        page.contains("Destinations changed") && page.contains("Amounts changed"),
        "{page}"
    );
    assert!(page.contains("20 → 30"), "{page}");
    // The deny-list hit, naming the list.
    let hits = page
        .split("id=\"deny-hits\"")
        .nth(1)
        .expect("the deny-list hits")
        .split("</div>")
        .next()
        .unwrap();
    assert!(hits.contains("d-3") && hits.contains("deny.txt (line 2)"), "{hits}");
    // The filters count and keep what they say.
    assert!(
        page.contains("Held (1)") && page.contains("Refused (1)") && page.contains("All (3)"),
        "{page}"
    );
    let (_, refused) = get(&format!("/batches/{second}?show=refused")).await;
    let rows = refused.split("id=\"rows\"").nth(1).unwrap();
    assert_eq!(rows.matches("data-status=").count(), 1, "{rows}");
    assert!(rows.contains("data-status=\"refused\""), "{rows}");
    let (_, held_only) = get(&format!("/batches/{second}?show=held")).await;
    let rows = held_only.split("id=\"rows\"").nth(1).unwrap();
    assert_eq!(rows.matches("data-status=").count(), 1, "{rows}");
    assert!(rows.contains("d-1"), "{rows}");

    // The overview: this month's batch waits, and what it needs against the balance.
    let (_, overview) = get("/").await;
    let needs = overview
        .split("id=\"needs\"")
        .nth(1)
        .expect("the needs table")
        .split("</table>")
        .next()
        .unwrap();
    assert!(needs.contains("<td>USDT</td>") && needs.contains(">40<"), "{needs}");
    assert!(overview.contains(&second), "{overview}");
    // Asked again at once, the same (the sums are kept while the batch's counts stay the same).
    assert_eq!(
        get("/").await.1.split("id=\"needs\"").nth(1),
        overview.split("id=\"needs\"").nth(1)
    );

    // Last month's progress, its JSON report and an order with its record.
    let (code, progress) = get(&format!("/batches/{first}/progress")).await;
    assert_eq!(code, 200);
    let progress: Value = serde_json::from_str(&progress).unwrap();
    assert_eq!(
        (progress["state"].as_str(), progress["final"].as_u64()),
        (Some("done"), Some(2)),
        "{progress}"
    );
    let (code, report) = get(&format!("/batches/{first}/report.json")).await;
    assert_eq!(code, 200);
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["rows"].as_array().map(Vec::len), Some(2), "{report}");
    let (code, order) = get("/orders/n-1").await;
    assert_eq!(code, 200);
    assert!(order.contains("Record id") && order.contains("success"), "{order}");
    let (code, missing) = get("/orders/no-such-order").await;
    assert_eq!(code, 404);
    assert!(
        missing.contains("<strong id=\"who\">auditor</strong>"),
        "every page shows who: {missing}"
    );

    // The plan approved and the recipient review not: d-2 is paid, the held d-1 still waits,
    // and the overview's sums follow (they are kept only while the batch's counts stay the same).
    let status = ccpayout_text(&api, &state, &config, &["status", &second]).1;
    let commands = approve_commands(&status);
    assert_eq!(commands.len(), 2, "the plan and the recipient review: {status}");
    let args: Vec<&str> = commands[0].iter().map(String::as_str).collect();
    let (code, out, err) = ccpayout_text(&api, &state, &config, &args);
    assert_eq!(code, Some(0), "{out}{err}");
    daemon.wait_for("d-2 paid", Duration::from_secs(60), || {
        ccpayout_text(&api, &state, &config, &["status", "d-2"])
            .1
            .contains("\"state\":\"success\"")
    });
    let (_, overview) = get("/").await;
    let needs = overview.split("id=\"needs\"").nth(1).expect("the needs table");
    assert!(needs.contains(">10<") && !needs.contains(">40<"), "{needs}");

    // Cancelled, the waiting batch needs nothing any more.
    let (code, out, err) = ccpayout_text(&api, &state, &config, &["cancel", &second]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, overview) = get("/").await;
    assert!(overview.contains("Nothing is waiting to be sent."), "{overview}");
    daemon.terminate(Duration::from_secs(30));
}

/// A v1 account (one that answers 11013 to every v2 call) sees its balances in the overview too:
/// the console asks `/v1/assets`, through the daemon's one paced client, and never v2. It asks no
/// v1 fee quote, so a fee the merchant pays on top is said as "+ fees", never left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_of_a_v1_account_shows_its_balances_from_v1_assets() {
    let api = TestApi::start_live(sandbox_config()).await;
    crate::v1::refuse_v2(&api.sandbox);
    api.sandbox.set_balance("USDT", "1234.5");
    let (_dir, state, config, inbox) = layout(
        "[console]\nenabled = true\nlisten = \"127.0.0.1:0\"\ntrusted_user_header = \"X-Remote-User\"\n\
         trusted_proxies = [\"127.0.0.1\"]\n[policy]\napproval = \"always\"\n",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replacen("[api]\n", "[api]\nversion = \"v1\"\n", 1)).unwrap();
    // USDT on TRX, the second row's fee paid by the merchant on top (v1's `merchant_pays_fee`).
    let token = ccpayout::sandbox::demo::v1_token_id("USDT", "TRX");
    let tron = crate::helpers::TRON_ADDRESS;
    let batch = format!(
        "order_id,recipient,amount,token_id,merchant_pays_fee\n\
         v1-0001,{tron},12,{token},false\nv1-0002,{tron},15,{token},true\n"
    );
    let daemon = Daemon::start(&api, &state, &config, &["--inbox", inbox.to_str().unwrap()]);
    let base = console_base(&daemon);
    drop_file(&inbox, "v1-payroll.csv", &batch);
    wait_for_approval(&daemon, &api, &state, &config);

    let reply = as_user(&base, "/", "treasurer").await;
    assert_eq!(reply.status(), 200);
    let overview = reply.text().await.unwrap();
    assert!(!overview.contains("could not be read"), "{overview}");
    let needs = overview
        .split("Balances and what open batches still need")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_else(|| panic!("no balances table in {overview}"));
    assert!(needs.contains("<td>USDT</td>") && needs.contains(">1234.5<"), "{needs}");
    // The console asks no v1 fee quote: the fee the merchant pays shows as "+ fees".
    assert!(needs.contains(">27 + fees<"), "{needs}");
    assert_eq!(crate::v1::not_v1(&api.sandbox.stats()), [], "no v2 call");
    assert!(
        api.sandbox.stats().requests.iter().any(|r| r.endpoint == "v1/assets"),
        "the balances came from /v1/assets"
    );
    daemon.terminate(Duration::from_secs(30));
}
