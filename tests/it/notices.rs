//! Notices (issue 16): every event reaches a receiver on loopback, signed; a receiver that is
//! down gets every notice afterwards exactly once, across a daemon restart; Slack bodies are
//! incoming-webhook messages; a 4xx is not retried. The binary runs against the sandbox on the
//! real clock, as an operator runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ccpayout::sandbox::{DEMO_FAILING_ADDRESS, SandboxConfig};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::daemon::{Daemon, RECIPIENTS, ccpayout_text, drop_file, layout, paid_once};
use crate::helpers::TestApi;

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Got {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    answered: u16,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn event(&self) -> String {
        self.headers.get("x-ccpayout-event").cloned().unwrap_or_default()
    }

    fn id(&self) -> String {
        self.headers.get("x-ccpayout-notice-id").cloned().unwrap_or_default()
    }
}

/// A webhook receiver on loopback that answers with a status the test sets.
#[derive(Clone)]
struct Receiver {
    status: Arc<AtomicU16>,
    got: Arc<Mutex<Vec<Got>>>,
    url: String,
}

impl Receiver {
    async fn start(status: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = Receiver {
            status: Arc::new(AtomicU16::new(status)),
            got: Arc::new(Mutex::new(Vec::new())),
            url,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(take))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The requests answered 2xx: the deliveries.
    fn delivered(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| (200..300).contains(&g.answered))
            .collect()
    }

    fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&[Got]) -> bool) {
        let start = Instant::now();
        while !done(&self.got()) {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; got: {:#?}",
                self.got().iter().map(|g| (g.event(), g.answered)).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn take(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let answered = r.status.load(Ordering::SeqCst);
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    r.got.lock().unwrap().push(Got {
        headers,
        body: body.to_vec(),
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn notify_section(receiver: &Receiver, extra: &str) -> String {
    format!("[[notify]]\nname = \"ops\"\nurl = {:?}\n{extra}", receiver.url)
}

/// A CSV of USDT payouts on TRX: (order id, recipient, amount).
fn csv(rows: &[(&str, &str, &str)]) -> String {
    let mut text = String::from("order_id,recipient,coin,chain,amount\n");
    for (id, to, amount) in rows {
        text.push_str(&format!("{id},{to},USDT,TRX,{amount}\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_a_loopback_receiver_with_a_valid_signature() {
    const SECRET: &str = "notice-secret-7f3a";
    let receiver = Receiver::start(200).await;
    let api = TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(300),
        balances: vec![("USDT".into(), "500".into())],
        ..SandboxConfig::default()
    })
    .await;
    let jobs_dir = tempfile::tempdir().unwrap();
    let (dir, state, config, _inbox) = layout(&format!(
        "jobs_dir = {:?}\n[policy]\napproval = \"always\"\n{}\
         [console]\nenabled = true\npublic_url = \"https://payouts.example.com\"\n",
        jobs_dir.path(),
        notify_section(&receiver, "secret_file = \"notify.secret\"\nformat = \"json\"\n")
    ));
    std::fs::write(dir.path().join("notify.secret"), format!("{SECRET}\n")).unwrap();
    let run = |args: &[&str]| ccpayout_text(&api, &state, &config, args);

    // A batch that needs approval: "approval_required", with the command that approves it.
    let a = dir.path().join("payroll-2026-11.csv");
    std::fs::write(
        &a,
        csv(&[
            ("n-1", RECIPIENTS[0], "2.5"),
            ("n-2", RECIPIENTS[1], "2.5"),
            ("n-3", DEMO_FAILING_ADDRESS, "2.5"),
        ]),
    )
    .unwrap();
    let (code, _, err) = run(&["submit", a.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    let approval = receiver
        .delivered()
        .into_iter()
        .find(|g| g.event() == "approval_required")
        .unwrap_or_else(|| panic!("no approval notice; stderr: {err}"));
    // With the console on, the notice links the batch's page.
    let url = approval.json()["figures"]["console_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        url,
        format!(
            "https://payouts.example.com/batches/{}",
            approval.json()["batch"]["id"].as_str().unwrap_or("?")
        ),
        "{}",
        approval.json()
    );
    assert!(
        approval.json()["lines"].to_string().contains(&url),
        "{}",
        approval.json()
    );
    let command = approval.json()["command"].as_str().unwrap().to_owned();
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    assert_eq!(args[0], "approve", "{command}");
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "the notice's own command approves the batch: {out}{err}");

    // Paid, one row failing at settlement: "batch_finished" and "rows_failed".
    let (code, out, err) = run(&["submit", a.to_str().unwrap()]);
    assert_eq!(code, Some(1), "a failed row makes exit 1: {out}{err}");
    // Each row sent once (the failing one fails at settlement).
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 3);

    // More than the balance: the plan blocks it, "balance_low".
    let b = dir.path().join("topup-2026-12.csv");
    std::fs::write(&b, csv(&[("n-4", RECIPIENTS[0], "400"), ("n-5", RECIPIENTS[1], "200")])).unwrap();
    let (code, _, err) = run(&["submit", b.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");

    // The next batch of the series waits for approval with its diff to the last one.
    let c = dir.path().join("payroll-2026-12.csv");
    std::fs::write(&c, csv(&[("n-6", RECIPIENTS[0], "10"), ("n-7", RECIPIENTS[2], "2.5")])).unwrap();
    let (code, _, err) = run(&["submit", c.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    let second = receiver
        .delivered()
        .into_iter()
        .filter(|g| g.event() == "approval_required")
        .nth(1)
        .expect("a second approval notice")
        .json();
    let first_name = approval.json()["batch"]["name"].clone();
    assert_eq!(second["figures"]["diff"]["previous"]["name"], first_name, "{second}");
    assert_eq!(second["figures"]["diff"]["counts"]["added"], 1, "{second}");
    assert_eq!(second["figures"]["diff"]["counts"]["removed"], 2, "{second}");
    assert_eq!(second["figures"]["diff"]["counts"]["amount_changed"], 1, "{second}");
    assert!(
        second["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("Compared with")),
        "{second}"
    );

    // The balance drops below what the approved batch needs: CCPayment refuses its creates
    // (14000), "balance_low" names the batch while `submit` waits; topped up, it pays.
    api.sandbox.set_balance("USDT", "1");
    let command = second["command"].as_str().unwrap().to_owned();
    let args: Vec<&str> = command.split(' ').skip(1).collect();
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{out}{err}");
    let paying = crate::helpers::command(
        &api,
        &[
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "submit",
            c.to_str().unwrap(),
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let batch_name = second["batch"]["name"].as_str().unwrap().to_owned();
    receiver.wait_for("balance_low while paying", Duration::from_secs(30), |got| {
        got.iter()
            .any(|g| g.event() == "balance_low" && g.json()["batch"]["name"] == batch_name.as_str())
    });
    api.sandbox.set_balance("USDT", "1000");
    let paid = paying.wait_with_output().unwrap();
    assert_eq!(
        paid.status.code(),
        Some(0),
        "topped up, the refused rows were sent again: {}",
        String::from_utf8_lossy(&paid.stderr)
    );

    // The kill switch: "sending_paused", sent by the command itself.
    let (code, _, err) = run(&["pause", "--reason", "audit"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["resume"]);
    assert_eq!(code, Some(0), "{err}");

    // The daemon: "daemon_started", a job whose command fails ("job_failed"), "daemon_stopping".
    std::fs::write(
        jobs_dir.path().join("export.toml"),
        format!(
            "inbox = {:?}\nschedule = \"*/2 * * * * *\"\ntimezone = \"UTC\"\nmissed = \"skip\"\n[command]\nargv = [\"/bin/false\"]\n",
            dir.path().join("job-inbox")
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&api, &state, &config, &[]);
    receiver.wait_for("job_failed", Duration::from_secs(30), |got| {
        got.iter().any(|g| g.event() == "job_failed")
    });
    let (code, _, log) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{log}");

    let delivered = receiver.delivered();
    let mut seen = BTreeSet::new();
    for got in &delivered {
        let event = got.event();
        let body = got.json();
        assert_eq!(body["event"], event.as_str(), "header and body name the same event");
        assert_eq!(got.headers["content-type"], "application/json");
        assert_eq!(
            got.headers.get("x-ccpayout-signature").map(String::as_str),
            Some(format!("sha256={}", hmac_hex(SECRET, &got.body)).as_str()),
            "a valid signature over the raw body of {event}"
        );
        assert_eq!(body["id"], got.id().as_str());
        assert!(body["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
        assert!(!body["title"].as_str().unwrap_or("").is_empty(), "{body}");
        let text = String::from_utf8_lossy(&got.body);
        assert!(!text.contains(SECRET), "the notice secret never appears in a notice");
        assert!(
            !text.contains(secrecy::ExposeSecret::expose_secret(api.sandbox.app_secret())),
            "the app secret never appears in a notice"
        );
        seen.insert(event);
    }
    for event in [
        "approval_required",
        "batch_finished",
        "rows_failed",
        "sending_paused",
        "balance_low",
        "job_failed",
        "daemon_started",
        "daemon_stopping",
    ] {
        assert!(seen.contains(event), "no {event} notice among {seen:?}");
    }

    // What the notices say is what happened.
    let by_event = |e: &str| delivered.iter().find(|g| g.event() == e).unwrap().json();
    let finished = by_event("batch_finished");
    assert_eq!(finished["figures"]["counts"]["success"], 2, "{finished}");
    assert_eq!(finished["figures"]["counts"]["failed"], 1, "{finished}");
    assert_eq!(finished["figures"]["paid"]["USDT"]["amount"], "5", "{finished}");
    assert!(
        finished["reports"]["result_csv"]
            .as_str()
            .unwrap()
            .ends_with(".result.csv"),
        "{finished}"
    );
    let failed = by_event("rows_failed");
    assert_eq!(failed["figures"]["rows"][0]["order_id"], "n-3", "{failed}");
    // Both link the batch's page in the console, as the approval did.
    for notice in [&finished, &failed] {
        let page = format!(
            "https://payouts.example.com/batches/{}",
            notice["batch"]["id"].as_str().unwrap_or("?")
        );
        assert_eq!(notice["figures"]["console_url"], page.as_str(), "{notice}");
        assert!(
            notice["lines"]
                .to_string()
                .contains(&format!("See it in the console: {page}")),
            "{notice}"
        );
    }
    assert!(
        failed["command"].as_str().unwrap().starts_with("ccpayout retry "),
        "{failed}"
    );
    let low = by_event("balance_low");
    assert_eq!(low["figures"]["shortfalls"][0]["coin"], "USDT", "{low}");
    assert_eq!(low["figures"]["shortfalls"][0]["needed"], "600", "{low}");
    assert!(
        low["figures"]["shortfalls"][0]["balance"]
            .as_str()
            .unwrap()
            .starts_with("49"),
        "{low}"
    );
    let refused = delivered
        .iter()
        .map(Got::json)
        .find(|n| n["event"] == "balance_low" && n["batch"]["name"].is_string())
        .unwrap();
    assert_eq!(refused["figures"]["shortfalls"][0]["coin"], "USDT", "{refused}");
    assert!(
        refused["figures"]["detail"].as_str().unwrap().contains("14000"),
        "{refused}"
    );
    let paused = by_event("sending_paused");
    assert_eq!(paused["figures"]["cause"], "kill_switch", "{paused}");
    assert_eq!(paused["figures"]["reason"], "audit", "{paused}");
    assert_eq!(by_event("job_failed")["figures"]["job"], "export");

    // Each notice once: no id delivered twice.
    let ids: Vec<String> = delivered.iter().map(Got::id).collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_every_notice_once_afterwards_also_across_a_restart() {
    let receiver = Receiver::start(503).await;
    let api = TestApi::start_live(crate::daemon::sandbox_config()).await;
    let (_dir, state, config, inbox) = layout(&notify_section(&receiver, ""));

    let inbox_arg = ["--inbox", inbox.to_str().unwrap()];
    let daemon = Daemon::start(&api, &state, &config, &inbox_arg);
    drop_file(
        &inbox,
        "weekly.csv",
        &csv(&[("d-1", RECIPIENTS[0], "2.5"), ("d-2", DEMO_FAILING_ADDRESS, "2.5")]),
    );
    daemon.wait_for("weekly.csv paid and archived", Duration::from_secs(60), || {
        inbox.join("done/weekly.csv").exists()
    });
    receiver.wait_for("a retry of the first notice", Duration::from_secs(20), |got| {
        got.len() >= 2
    });
    // `status` through the control socket says the target is failing.
    let (_, status, _) = ccpayout_text(&api, &state, &config, &["status"]);
    assert!(status.contains("notices to ops: 0 delivered"), "{status}");
    assert!(status.contains("FAILING: HTTP 503"), "{status}");
    let (code, _, log) = daemon.terminate(Duration::from_secs(40));
    assert_eq!(code, Some(0), "{log}");
    assert!(receiver.delivered().is_empty());
    let (_, status, _) = ccpayout_text(&api, &state, &config, &["status"]);
    assert!(status.contains("notices to ops: 0 delivered, 4 pending"), "{status}");

    // The receiver is back; the next daemon sends everything, once, in order.
    receiver.answer(200);
    let daemon = Daemon::start(&api, &state, &config, &inbox_arg);
    receiver.wait_for(
        "the four notices of the first life and the second start",
        Duration::from_secs(30),
        |got| got.iter().filter(|g| g.answered == 200).count() >= 5,
    );
    let (code, _, log) = daemon.terminate(Duration::from_secs(40));
    assert_eq!(code, Some(0), "{log}");

    let delivered = receiver.delivered();
    let events: Vec<String> = delivered.iter().map(Got::event).collect();
    assert_eq!(
        events,
        [
            "daemon_started",
            "batch_finished",
            "rows_failed",
            "daemon_stopping",
            "daemon_started",
            "daemon_stopping"
        ],
        "every notice once, in the order recorded"
    );
    let ids: Vec<String> = delivered.iter().map(Got::id).collect();
    let seqs: Vec<u64> = ids
        .iter()
        .map(|id| id.split('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Every failed attempt was of a notice delivered later: nothing lost, nothing extra.
    let failed: BTreeSet<String> = receiver
        .got()
        .iter()
        .filter(|g| g.answered == 503)
        .map(Got::id)
        .collect();
    assert!(failed.iter().all(|id| ids.contains(id)), "{failed:?} vs {ids:?}");
    let (_, status, _) = ccpayout_text(&api, &state, &config, &["status"]);
    assert!(status.contains("notices to ops: 6 delivered, 0 pending"), "{status}");
    assert_eq!(paid_once(&api.sandbox.ledger()).len(), 2);
}

/// Slack's incoming webhook takes `text` and `blocks`; every block here a section or a context
/// of mrkdwn text within Slack's limits.
fn assert_slack_message(body: &Value) {
    let object = body.as_object().expect("an object");
    assert_eq!(object.keys().collect::<Vec<_>>(), ["blocks", "text"], "{body}");
    assert!(!body["text"].as_str().unwrap().is_empty());
    for block in body["blocks"].as_array().unwrap() {
        match block["type"].as_str().unwrap() {
            "section" => {
                assert_eq!(block["text"]["type"], "mrkdwn");
                let text = block["text"]["text"].as_str().unwrap();
                assert!(!text.is_empty() && text.chars().count() <= 3000, "{text}");
            }
            "context" => {
                for element in block["elements"].as_array().unwrap() {
                    assert_eq!(element["type"], "mrkdwn");
                    assert!(element["text"].is_string());
                }
            }
            other => panic!("block type {other} in {body}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_bodies_are_incoming_webhook_messages_and_a_4xx_is_not_retried() {
    let receiver = Receiver::start(400).await;
    let api = TestApi::start_live(crate::daemon::sandbox_config()).await;
    let (_dir, state, config, _inbox) = layout(&notify_section(&receiver, "format = \"slack\"\n"));
    let run = |args: &[&str]| ccpayout_text(&api, &state, &config, args);

    let (code, _, err) = run(&["pause", "--reason", "rotating <keys> & certs"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(receiver.got().len(), 1, "a 4xx is not retried");
    let (_, status, _) = run(&["status"]);
    assert!(status.contains("1 refused by the target (last: HTTP 400"), "{status}");
    assert!(
        !status.contains("/hook"),
        "status shows the target's name, never its URL: {status}"
    );

    receiver.answer(200);
    let (code, _, err) = run(&["resume"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["pause"]);
    assert_eq!(code, Some(0), "{err}");
    let got = receiver.got();
    assert_eq!(got.len(), 2, "the refused notice was not sent again: {got:?}");
    for g in &got {
        let body = g.json();
        assert_slack_message(&body);
        assert!(
            !g.headers.contains_key("x-ccpayout-signature"),
            "no secret, no signature"
        );
    }
    let first = got[0].json();
    let section = first["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        section.contains("rotating &lt;keys&gt; &amp; certs"),
        "mrkdwn escaped: {section}"
    );
    assert_eq!(first["text"], "Sending paused by an operator (kill switch)");
}
