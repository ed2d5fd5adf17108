//! The bodies a notice is sent as, by a target's format: one JSON object (`json`) or Slack's
//! incoming-webhook body (`slack`). Pure: the same notice gives the same bytes on every retry.

use std::path::Path;

use serde_json::{Value, json};

use crate::config::NotifyFormat;
use crate::model::notice::{Notice, NoticeEvent};
use crate::util::time::rfc3339_ms;

/// What the dispatcher adds to every notice: where it runs, and where a finished batch's
/// reports are.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    /// The machine's host name.
    pub host: &'a str,
    /// The reports folder, when known: a finished batch's report paths are named from it.
    pub reports_dir: Option<&'a Path>,
}

/// Slack allows 3,000 characters in a section's text.
const SLACK_SECTION_CHARS: usize = 2_900;

/// The body of `notice` in `format`.
pub fn body(format: NotifyFormat, notice: &Notice, context: &Context<'_>) -> Vec<u8> {
    let value = match format {
        NotifyFormat::Json => json_value(notice, context),
        NotifyFormat::Slack => slack_value(notice, context),
    };
    serde_json::to_vec(&value).unwrap_or_default()
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
            reports_dir: None,
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
    fn a_long_slack_section_is_cut_to_slacks_limit() {
        let mut n = notice();
        n.lines = vec!["x".repeat(10_000)];
        let v: Value = serde_json::from_slice(&body(NotifyFormat::Slack, &n, &Context::default())).unwrap();
        assert!(v["blocks"][0]["text"]["text"].as_str().unwrap().chars().count() <= 3_000);
    }
}
