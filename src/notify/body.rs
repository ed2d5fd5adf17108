//! The bodies a notice is sent as, by a target's format: one JSON object (`json`) or Slack's
//! incoming-webhook body (`slack`). Pure: the same notice gives the same bytes on every retry.

use std::borrow::Cow;
use std::path::Path;

use serde_json::{Value, json};

use crate::config::{ConsoleConfig, NotifyFormat};
use crate::model::notice::{Notice, NoticeEvent};
use crate::util::time::rfc3339_ms;

/// What the dispatcher adds to every notice: where it runs, where a finished batch's reports
/// are, and where a batch's page is in the web console.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    /// The machine's host name.
    pub host: &'a str,
    /// The reports folder, when known: a finished batch's report paths are named from it.
    pub reports_dir: Option<&'a Path>,
    /// The web console, when configured: a notice about a batch links the batch's page.
    pub console: Option<&'a ConsoleConfig>,
}

/// Slack allows 3,000 characters in a section's text.
const SLACK_SECTION_CHARS: usize = 2_900;

/// The body of `notice` in `format`.
pub fn body(format: NotifyFormat, notice: &Notice, context: &Context<'_>) -> Vec<u8> {
    let notice = linked(notice, context);
    let value = match format {
        NotifyFormat::Json => json_value(&notice, context),
        NotifyFormat::Slack => slack_value(&notice, context),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `notice` with a line linking its batch's page in the console, and that link as
/// `figures.console_url`, when the console is on and the notice is about a batch. An approval
/// asks for one; any other batch notice points to where its rows are.
fn linked<'n>(notice: &'n Notice, context: &Context<'_>) -> Cow<'n, Notice> {
    let Some(url) = notice
        .batch
        .as_ref()
        .and_then(|batch| context.console?.batch_url(&batch.id))
    else {
        return Cow::Borrowed(notice);
    };
    let mut notice = notice.clone().line(match notice.event {
        NoticeEvent::ApprovalRequired => format!("Review and approve it in the console: {url}"),
        _ => format!("See it in the console: {url}"),
    });
    match notice.figures.as_object_mut() {
        Some(figures) => {
            figures.insert("console_url".to_owned(), Value::from(url));
        }
        None => notice.figures = json!({ "console_url": url }),
    }
    Cow::Owned(notice)
}

/// The paths of a finished batch's reports, as `report::ReportPaths` names them.
fn reports(notice: &Notice, context: &Context<'_>) -> Option<Value> {
    if notice.event != NoticeEvent::BatchFinished {
        return None;
    }
    let (dir, batch) = (context.reports_dir?, notice.batch.as_ref()?);
    let paths = crate::report::ReportPaths::new(dir, &batch.name);
    Some(json!({
        "result_csv": paths.result_csv.display().to_string(),
        "result_json": paths.result_json.display().to_string(),
        "summary_json": paths.summary_json.display().to_string(),
    }))
}

/// `{"id", "event", "time", "host", "batch", "title", "lines", "command", "figures", "reports"}`.
fn json_value(notice: &Notice, context: &Context<'_>) -> Value {
    let mut value = json!({
        "id": notice.id(),
        "event": notice.event.as_str(),
        "time": rfc3339_ms(notice.at_ms),
        "host": context.host,
        "batch": notice.batch,
        "title": notice.title,
        "lines": notice.lines,
        "command": notice.command,
        "figures": notice.figures,
    });
    if let Some(reports) = reports(notice, context)
        && let Some(object) = value.as_object_mut()
    {
        object.insert("reports".to_owned(), reports);
    }
    value
}

/// Slack's incoming-webhook body: `text` (the notification's line) and `blocks` (a section with
/// the title and the lines, a context with the command and the host).
fn slack_value(notice: &Notice, context: &Context<'_>) -> Value {
    let mut text = format!("*{}*", escape(&notice.title));
    for line in &notice.lines {
        text.push('\n');
        text.push_str(&escape(line));
    }
    if let Some(reports) = reports(notice, context)
        && let Some(csv) = reports.get("result_csv").and_then(Value::as_str)
    {
        text.push_str(&format!("\nReport: `{}`", escape(csv)));
    }
    if text.chars().count() > SLACK_SECTION_CHARS {
        text = text.chars().take(SLACK_SECTION_CHARS).collect::<String>() + "…";
    }
    let mut footer = vec![format!("`{}` on {}", notice.event.as_str(), escape(context.host))];
    if let Some(command) = &notice.command {
        footer.insert(0, format!("Next: `{}`", escape(command)));
    }
    json!({
        "text": notice.title,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": footer.join(" · ")}]},
        ],
    })
}

/// Slack's three escapes for mrkdwn text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::notice::NoticeEvent;

    fn notice() -> Notice {
        let mut n = Notice::new(
            NoticeEvent::BatchFinished,
            1_765_000_000_000,
            "Batch p-1 finished: 2 paid",
        )
        .about("abc", "p-1")
        .line("Paid: 3 USDT (2 rows) <b>&")
        .command("ccpayout report p-1");
        n.seq = 7;
        n
    }

    #[test]
    fn the_json_body_names_the_event_time_batch_figures_and_reports() {
        let dir = Path::new("/srv/reports");
        let ctx = Context {
            host: "pay-1",
            reports_dir: Some(dir),
            ..Context::default()
        };
        let v: Value = serde_json::from_slice(&body(NotifyFormat::Json, &notice(), &ctx)).unwrap();
        assert_eq!(v["id"], "7-1765000000000");
        assert_eq!(v["event"], "batch_finished");
        assert_eq!(v["time"], rfc3339_ms(1_765_000_000_000));
        assert_eq!(v["batch"]["name"], "p-1");
        assert_eq!(v["command"], "ccpayout report p-1");
        assert_eq!(v["reports"]["result_csv"], "/srv/reports/p-1.result.csv");
        assert_eq!(
            body(NotifyFormat::Json, &notice(), &ctx),
            body(NotifyFormat::Json, &notice(), &ctx)
        );
    }

    #[test]
    fn the_slack_body_is_an_incoming_webhook_message_with_escaped_mrkdwn() {
        let ctx = Context {
            host: "pay-1",
            ..Context::default()
        };
        let v: Value = serde_json::from_slice(&body(NotifyFormat::Slack, &notice(), &ctx)).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["blocks", "text"]);
        assert_eq!(v["text"], "Batch p-1 finished: 2 paid");
        assert_eq!(v["blocks"][0]["type"], "section");
        assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
        let section = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(section.contains("&lt;b&gt;&amp;"), "{section}");
        assert_eq!(v["blocks"][1]["type"], "context");
        assert!(
            v["blocks"][1]["elements"][0]["text"]
                .as_str()
                .unwrap()
                .contains("`ccpayout report p-1`")
        );
    }

    #[test]
    fn with_the_console_on_a_batch_notice_links_the_batch_page_and_others_do_not() {
        let mut console = ConsoleConfig {
            enabled: true,
            listen: "127.0.0.1:8789".parse().unwrap(),
            behind_proxy: true,
            public_url: Some("https://payouts.example.com".to_owned()),
            trusted_user_header: None,
            trusted_proxies: Vec::new(),
            idle_timeout: std::time::Duration::from_secs(1_800),
        };
        let ctx = Context {
            host: "pay-1",
            console: Some(&console),
            ..Context::default()
        };
        let v: Value = serde_json::from_slice(&body(NotifyFormat::Json, &notice(), &ctx)).unwrap();
        let url = "https://payouts.example.com/batches/abc";
        assert_eq!(v["figures"]["console_url"], url);
        assert_eq!(v["lines"][1], format!("See it in the console: {url}"));
        let slack: Value = serde_json::from_slice(&body(NotifyFormat::Slack, &notice(), &ctx)).unwrap();
        assert!(
            slack["blocks"][0]["text"]["text"].as_str().unwrap().contains(url),
            "{slack}"
        );

        // An approval asks for one; the figures it already has are kept.
        let mut approval = Notice::new(NoticeEvent::ApprovalRequired, 1, "Batch p-1 waits").about("abc", "p-1");
        approval.figures = json!({ "orders": 3 });
        let v: Value = serde_json::from_slice(&body(NotifyFormat::Json, &approval, &ctx)).unwrap();
        assert_eq!(v["lines"][0], format!("Review and approve it in the console: {url}"));
        assert_eq!(v["figures"], json!({ "orders": 3, "console_url": url }));

        // Not about a batch, or the console off: the notice as it was.
        let paused = Notice::new(NoticeEvent::SendingPaused, 1, "Sending paused");
        let v: Value = serde_json::from_slice(&body(NotifyFormat::Json, &paused, &ctx)).unwrap();
        assert!(
            v["figures"].get("console_url").is_none() && v["lines"].as_array().is_none_or(Vec::is_empty),
            "{v}"
        );
        console.enabled = false;
        let ctx = Context {
            console: Some(&console),
            ..Context::default()
        };
        assert_eq!(
            body(NotifyFormat::Json, &notice(), &ctx),
            body(NotifyFormat::Json, &notice(), &Context::default())
        );
    }

    #[test]
    fn a_long_slack_section_is_cut_to_slacks_limit() {
        let mut n = notice();
        n.lines = vec!["x".repeat(10_000)];
        let v: Value = serde_json::from_slice(&body(NotifyFormat::Slack, &n, &Context::default())).unwrap();
        assert!(v["blocks"][0]["text"]["text"].as_str().unwrap().chars().count() <= 3_000);
    }
}
