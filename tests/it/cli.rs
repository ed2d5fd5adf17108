//! The binary as a new user runs it: `ccpayout sandbox` in one process, `ccpayout api` in another.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ccpayout");
const DEMO_APP_ID: &str = "ccpayout-sandbox-app";
const DEMO_SECRET: &str = "ccpayout-sandbox-secret";

/// A `ccpayout sandbox` child process, killed on drop.
struct SandboxProcess {
    child: Child,
    url: String,
}

impl SandboxProcess {
    fn start(extra: &[&str]) -> SandboxProcess {
        let mut child = Command::new(BIN)
            .args(["sandbox", "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ccpayout sandbox starts");
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        // Keep reading what it prints after the first line: a closed pipe would make its next
        // line fail and the sandbox exit mid-test.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let url = first
            .trim()
            .strip_prefix("ccpayout sandbox listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        SandboxProcess { child, url }
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ccpayout(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("CCPAYOUT_CONFIG")
        .env_remove("CCPAYOUT_APP_SECRET_FILE")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("ccpayout runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn sandbox_prints_its_address_and_api_prints_the_catalogue() {
    let sandbox = SandboxProcess::start(&[]);
    let env = [
        ("CCPAYOUT_API_BASE_URL", sandbox.url.as_str()),
        ("CCPAYOUT_APP_ID", DEMO_APP_ID),
        ("CCPAYOUT_APP_SECRET", DEMO_SECRET),
    ];
    let out = ccpayout(&["api", "getCoinList"], &env);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let reply: serde_json::Value = serde_json::from_str(&stdout).expect("the reply is printed as JSON");
    assert_eq!(reply["code"], 10000);
    let symbols: Vec<&str> = reply["data"]["coins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["symbol"].as_str())
        .collect();
    assert!(symbols.contains(&"USDT") && symbols.contains(&"TRX"), "{symbols:?}");

    // A body given on the command line is sent as is.
    let out = ccpayout(
        &["api", "getWithdrawFee", r#"{"coinId": 1280, "chain": "POLYGON"}"#],
        &env,
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("MATIC"));

    // v1 calls are signed the v1 way and their signed replies verify.
    let out = ccpayout(&["api", "v1/bill/info", r#"{"merchant_order_ids":["none"]}"#], &env);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
}

#[test]
fn a_wrong_secret_exits_non_zero_naming_11005_and_what_to_check() {
    let sandbox = SandboxProcess::start(&[]);
    let wrong = "definitely-not-the-secret-42";
    let out = ccpayout(
        &["-vvv", "api", "getCoinList"],
        &[
            ("CCPAYOUT_API_BASE_URL", &sandbox.url),
            ("CCPAYOUT_APP_ID", DEMO_APP_ID),
            ("CCPAYOUT_APP_SECRET", wrong),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("11005 VerifySignFailed"), "{stderr}");
    assert!(stderr.contains("check:") && stderr.contains("app secret"), "{stderr}");
    // Trace logging was on: the secret is still nowhere.
    assert!(stderr.contains("TRACE"), "{stderr}");
    for output in [&stderr, &text(&out.stdout)] {
        assert!(!output.contains(wrong), "the secret leaked: {output}");
    }
}

#[test]
fn a_wrong_clock_or_app_id_is_explained() {
    let sandbox = SandboxProcess::start(&["--app-id", "my-app", "--app-secret", "my-secret"]);
    let out = ccpayout(
        &["api", "getCoinList"],
        &[
            ("CCPAYOUT_API_BASE_URL", &sandbox.url),
            ("CCPAYOUT_APP_ID", "other-app"),
            ("CCPAYOUT_APP_SECRET", "my-secret"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("12001 MerchantNotFound") && stderr.contains("app id"),
        "{stderr}"
    );
}

#[test]
fn missing_credentials_are_a_configuration_error() {
    let out = ccpayout(
        &["api", "getCoinList"],
        &[("CCPAYOUT_API_BASE_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("CCPAYOUT_APP_ID") && stderr.contains("CCPAYOUT_APP_SECRET"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_api_is_a_runtime_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = ccpayout(
        &["api", "getCoinList"],
        &[
            ("CCPAYOUT_API_BASE_URL", &url),
            ("CCPAYOUT_APP_ID", "a"),
            ("CCPAYOUT_APP_SECRET", "b"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("request not sent"), "{}", text(&out.stderr));
}

#[test]
fn config_check_reports_where_the_secret_came_from_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "file-secret-value-55\n").unwrap();
    let config = dir.path().join("ccpayout.toml");
    std::fs::write(&config, "[api]\napp_id = \"app-1\"\napp_secret_file = \"secret\"\n").unwrap();
    let out = ccpayout(&["--config", config.to_str().unwrap(), "config", "check"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("app secret:   set, from file"), "{stdout}");
    assert!(!stdout.contains("file-secret-value-55"));

    std::fs::write(&config, "[api]\napp_id = \"app-1\"\nsecret = \"x\"\n").unwrap();
    let out = ccpayout(&["--config", config.to_str().unwrap(), "config", "check"], &[]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("unknown field `secret`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ccpayout.toml");
    let out = ccpayout(
        &["--config", example, "config", "check"],
        &[("CCPAYOUT_APP_SECRET", "x")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn bash_completes_ccpayout_sub_to_submit_from_the_generated_script() {
    let script = ccpayout(&["completions", "bash"], &[]);
    assert!(script.status.success(), "{}", text(&script.stderr));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ccpayout.bash");
    std::fs::write(&path, &script.stdout).unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
                 _ccpayout ccpayout '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                path.display(),
                words.join(" "),
                words.len() - 1,
                words[words.len() - 1],
                words[words.len() - 2],
            ))
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(complete("ccpayout sub"), ["submit"]);
    assert!(complete("ccpayout submit --no").contains(&"--no-wait".to_owned()));
    assert!(complete("ccpayout completions ").iter().any(|w| w == "fish"));
    for shell in ["zsh", "fish"] {
        let out = ccpayout(&["completions", shell], &[]);
        assert!(out.status.success() && text(&out.stdout).contains("submit"), "{shell}");
    }
}

#[test]
fn the_manual_page_rendered_by_man_shows_every_subcommand() {
    let out = ccpayout(&["manpage"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    let help = text(&ccpayout(&["--help"], &[]).stdout);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        // A command's own line; its wrapped description is indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(
        commands.contains(&"submit") && commands.contains(&"completions"),
        "{commands:?}"
    );
    // Rendered as a reader sees it, where `man` is installed; the roff source otherwise.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ccpayout.1");
    std::fs::write(&file, &out.stdout).unwrap();
    let rendered = Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "120")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout));
    let shown = rendered.as_deref().unwrap_or(&page);
    for command in &commands {
        assert!(shown.contains(&format!("ccpayout {command}")), "no entry for {command}");
    }
    for section in ["ENVIRONMENT", "EXIT STATUS", "FILES"] {
        assert!(shown.contains(section), "{section}");
    }
}
