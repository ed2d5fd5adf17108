//! The manual page `ccpayout(1)` and the shell completions, generated from the clap definitions
//! the command line parses with, so they are never written twice: a new command or option is
//! documented the moment it exists. What clap cannot know — the environment beyond the options'
//! own variables, the exit codes, the files — is written here once.
//!
//! `ccpayout completions SHELL` prints a completion script; `ccpayout manpage` (hidden, for
//! packaging: `packaging/deb.sh`) prints the page in roff.

use std::io::Write;

use clap::{Arg, ArgAction, Command, CommandFactory};
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use super::Cli;

/// The shells `ccpayout completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Writes the completion script of `shell` for the `ccpayout` command.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, "ccpayout", out);
}

/// Environment variables the options do not name themselves: (variable, meaning).
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "CCPAYOUT_API_BASE_URL",
        "Base URL of the CCPayment API (v2 and v1), scheme://host[:port]; overrides api.base_url.",
    ),
    (
        "CCPAYOUT_APP_ID",
        "The app id from the CCPayment dashboard; overrides api.app_id.",
    ),
    (
        "CCPAYOUT_APP_SECRET",
        "The app secret. Never printed or logged. Prefer a file or a systemd credential.",
    ),
    (
        "CCPAYOUT_APP_SECRET_FILE",
        "A file holding the app secret (one trailing line break is dropped).",
    ),
    (
        "CREDENTIALS_DIRECTORY",
        "Set by systemd: the credential app_secret (LoadCredential=app_secret:...) is read from it.",
    ),
    (
        "STATE_DIRECTORY",
        "Set by systemd (StateDirectory=): the default state directory.",
    ),
    (
        "XDG_STATE_HOME",
        "Outside systemd, the default state directory is $XDG_STATE_HOME/ccpayout (else ~/.local/state/ccpayout).",
    ),
    (
        "RUST_LOG",
        "Overrides the log level and filters (tracing-subscriber syntax).",
    ),
    ("NO_COLOR", "Set to turn off colours in the log output."),
    (
        "NOTIFY_SOCKET, WATCHDOG_USEC",
        "Set by systemd: `ccpayout run` reports READY, STOPPING and watchdog pings.",
    ),
];

/// The exit codes: (code, meaning).
const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "1",
        "The work finished, but CCPayment refused a call, or rows failed, were refused or wait for approval.",
    ),
    (
        "2",
        "Usage or runtime error: network, files, a reply that cannot be trusted.",
    ),
    (
        "78",
        "Configuration error: the config file, job files, credentials or the environment.",
    ),
    (
        "130",
        "`ccpayout run` stopped by a second signal, without waiting for the requests in flight.",
    ),
];

/// The files: (path, meaning).
const FILES: &[(&str, &str)] = &[
    (
        "/etc/ccpayout/ccpayout.toml",
        "The configuration of the packaged service (CCPAYOUT_CONFIG in its unit); unknown keys are errors. \
         An annotated example is /usr/share/doc/ccpayout/examples/ccpayout.toml.",
    ),
    (
        "/etc/ccpayout/app_secret",
        "The app secret, mode 0600, handed to the service as the systemd credential app_secret.",
    ),
    (
        "/etc/ccpayout/env",
        "Optional environment file of the service (CCPAYOUT_APP_ID, CCPAYOUT_API_BASE_URL, ...).",
    ),
    (
        "/var/lib/ccpayout",
        "The service's state directory: ccpayout.redb (every batch, order and audit line), audit.jsonl, \
         control.sock (the operator commands' socket while `ccpayout run` holds the store) and reports/. \
         It records what was paid: never delete it while a batch is open.",
    ),
    (
        "~/.local/state/ccpayout",
        "The state directory outside systemd (sandbox/ below it for --sandbox runs).",
    ),
    (
        "/usr/lib/systemd/system/ccpayout.service",
        "The hardened unit of the daemon; with ccpayout.conf in /usr/lib/sysusers.d and /usr/lib/tmpfiles.d.",
    ),
];

/// Renders the whole manual page: name, synopsis, description and global options from clap, a
/// section per command (its description and every option), then the environment, exit status,
/// files and see also.
pub fn manpage(out: &mut dyn Write) -> std::io::Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone()).section("1").manual("ccpayout manual");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;

    let mut roff = Roff::default();
    roff.control("SH", ["COMMANDS"]);
    for sub in visible_subcommands(&cmd) {
        command_section(&mut roff, &format!("ccpayout {}", sub.get_name()), sub);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    let mut env: Vec<(String, String)> = all_args(&cmd)
        .into_iter()
        .filter_map(|arg| {
            let var = arg.get_env()?.to_string_lossy().into_owned();
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            Some((var, help))
        })
        .collect();
    env.sort();
    env.dedup_by(|a, b| a.0 == b.0);
    for (var, meaning) in env
        .iter()
        .map(|(v, m)| (v.as_str(), m.as_str()))
        .chain(ENVIRONMENT.iter().copied())
    {
        roff.control("TP", []);
        roff.text([bold(var)]);
        roff.text([roman(meaning)]);
    }
    for (title, entries) in [("EXIT STATUS", EXIT_STATUS), ("FILES", FILES)] {
        roff.control("SH", [title]);
        for (what, meaning) in entries {
            roff.control("TP", []);
            roff.text([bold(*what)]);
            roff.text([roman(*meaning)]);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        roman("The README and ARCHITECTURE.md of ccpayout; "),
        bold("systemd.exec"),
        roman("(5), "),
        bold("systemd-creds"),
        roman("(1), "),
        bold("ssh-keygen"),
        roman("(1) for signed batch files and approvals."),
    ]);
    roff.to_writer(out)?;
    man.render_version_section(out)
}

/// The commands the page documents, depth first: `config`, then `config check`, …
fn visible_subcommands(cmd: &Command) -> Vec<&Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect()
}

/// `.SS ccpayout NAME`: the command's synopsis, its long description and each option; then its
/// own subcommands.
fn command_section(roff: &mut Roff, path: &str, cmd: &Command) {
    roff.control("SS", [path]);
    let mut synopsis: Vec<Inline> = vec![bold(path)];
    for arg in cmd.get_positionals() {
        let name = arg
            .get_value_names()
            .and_then(|v| v.first())
            .map_or_else(|| arg.get_id().to_string(), ToString::to_string);
        synopsis.push(roman(" "));
        synopsis.push(italic(name.to_uppercase()));
    }
    if cmd.get_arguments().any(|a| !a.is_positional() && !a.is_hide_set()) {
        synopsis.push(roman(" [OPTIONS]"));
    }
    if cmd.has_subcommands() {
        synopsis.push(roman(" "));
        synopsis.push(italic("COMMAND"));
    }
    roff.text(synopsis);
    if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        for paragraph in about.to_string().split("\n\n") {
            roff.control("PP", []);
            roff.text([roman(paragraph.replace('\n', " "))]);
        }
    }
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if matches!(arg.get_id().as_str(), "help" | "version") || arg.is_global_set() {
            continue;
        }
        roff.control("TP", []);
        roff.text(arg_heading(arg));
        let mut help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string().replace('\n', " "))
            .unwrap_or_default();
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_owned())
            .collect();
        if !values.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            help.push_str(&format!(" One of: {}.", values.join(", ")));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            help.push_str(&format!(" Default: {}.", defaults.join(", ")));
        }
        roff.text([roman(help)]);
    }
    for sub in visible_subcommands(cmd) {
        command_section(roff, &format!("{path} {}", sub.get_name()), sub);
    }
}

/// `--name VALUE`, `-s, --name`, or `FILE` for a positional.
fn arg_heading(arg: &Arg) -> Vec<Inline> {
    let value = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map_or_else(|| arg.get_id().to_string().to_uppercase(), ToString::to_string);
    if arg.is_positional() {
        return vec![italic(value)];
    }
    let mut heading = Vec::new();
    if let Some(short) = arg.get_short() {
        heading.push(bold(format!("-{short}")));
        heading.push(roman(", "));
    }
    if let Some(long) = arg.get_long() {
        heading.push(bold(format!("--{long}")));
    }
    if arg.get_action().takes_values() {
        heading.push(roman(" "));
        heading.push(italic(value));
    }
    heading
}

/// Every argument of `cmd` and of its subcommands, recursively.
fn all_args(cmd: &Command) -> Vec<&Arg> {
    let mut args: Vec<&Arg> = cmd.get_arguments().collect();
    for sub in cmd.get_subcommands() {
        args.extend(all_args(sub));
    }
    args
}

/// Every visible command's path (`ccpayout submit`, `ccpayout config check`, …), for the tests
/// that hold the page and the completions to the definitions.
pub fn command_paths() -> Vec<String> {
    fn walk(cmd: &Command, path: &str, out: &mut Vec<String>) {
        for sub in visible_subcommands(cmd) {
            let p = format!("{path} {}", sub.get_name());
            out.push(p.clone());
            walk(sub, &p, out);
        }
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, "ccpayout", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> String {
        let mut out = Vec::new();
        manpage(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_command_and_option_has_an_entry_in_the_page() {
        let page = page();
        let paths = command_paths();
        assert!(paths.contains(&"ccpayout submit".to_owned()), "{paths:?}");
        assert!(paths.contains(&"ccpayout config check".to_owned()), "{paths:?}");
        for path in &paths {
            assert!(page.contains(&format!(".SS \"{path}\"")), "no entry for {path}");
        }
        // Every long option of every visible command.
        fn walk(cmd: &Command, page: &str) {
            for sub in visible_subcommands(cmd) {
                for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                    if let Some(long) = arg.get_long()
                        && long != "help"
                    {
                        let entry = format!("\\-\\-{}", long.replace('-', "\\-"));
                        assert!(page.contains(&entry), "no entry for --{long} of {}", sub.get_name());
                    }
                }
                walk(sub, page);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        walk(&cmd, &page);
        for section in ["ENVIRONMENT", "EXIT STATUS", "FILES", "SEE ALSO"] {
            assert!(
                page.contains(&format!(".SH \"{section}\"")) || page.contains(&format!(".SH {section}")),
                "{section}"
            );
        }
        for var in ["CCPAYOUT_CONFIG", "CCPAYOUT_STATE_DIR", "CCPAYOUT_APP_SECRET_FILE"] {
            assert!(page.contains(var), "{var}");
        }
        assert!(page.contains("/etc/ccpayout/ccpayout.toml"));
        assert!(!page.contains("manpage"), "the hidden generator is not documented");
    }

    #[test]
    fn completions_name_every_command_in_each_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let script = String::from_utf8(out).unwrap();
            for path in command_paths() {
                let name = path.rsplit(' ').next().unwrap();
                assert!(script.contains(name), "{shell:?} lacks {path}");
            }
        }
    }
}
