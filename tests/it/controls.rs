//! Who may pay whom (issue 14): signed batch files, named approvers with a quorum, maker and
//! checker, the recipient registry's holds on new and changed destinations, and deny lists —
//! each shown through `submit` and `check` against the sandbox, whose ledger is the proof of
//! what was paid.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ccpayout::rules::signature::{self, APPROVAL_NAMESPACE, BATCH_NAMESPACE};
use serde_json::Value;

use crate::helpers::TestApi;
use crate::submit::{Run, ccpayout, sandbox_config, submit};

const A: &str = "TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K";
const B: &str = "TSGACwShBWKpUV3mCp5yh3zwn36kYtDZNr";
const C: &str = "TVqoGi64Ad2mSiPNsqVnqB2VkLGi7Mx1vq";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/signing")
        .join(name)
}

/// The config of `submit.rs` with a `[policy]` table of `policy`.
fn write_config(dir: &Path, policy: &str) -> PathBuf {
    crate::submit::write_config(dir, &format!("[policy]\n{policy}"))
}

/// A CSV of USDT payouts on TRX: (order_id, recipient, amount, payee).
fn batch(dir: &Path, name: &str, rows: &[(&str, &str, &str, &str)]) -> PathBuf {
    let mut text = String::from("order_id,recipient,coin,chain,amount,payee\n");
    for (id, to, amount, payee) in rows {
        text.push_str(&format!("{id},{to},USDT,TRX,{amount},{payee}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Signs `file` as `ssh-keygen -Y sign -n NAMESPACE -f KEY FILE` would, into `FILE.sig`.
fn sign(file: &Path, key: &str, namespace: &str) {
    let key = std::fs::read_to_string(fixture(key)).unwrap();
    let sig = signature::sign(&key, namespace, &std::fs::read(file).unwrap()).unwrap();
    let mut sig_path = file.as_os_str().to_owned();
    sig_path.push(".sig");
    std::fs::write(sig_path, sig).unwrap();
}

/// Order ids the sandbox paid, each asserted paid once.
fn paid(api: &TestApi) -> BTreeSet<String> {
    let ledger = api.sandbox.ledger();
    let mut ids = BTreeSet::new();
    for p in &ledger.payouts {
        assert!(ids.insert(p.order_id.clone()), "{} was paid twice", p.order_id);
    }
    ids
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The batch name `submit` printed ("stored batch NAME (…").
fn batch_name(run: &Run) -> String {
    run.stderr
        .lines()
        .find_map(|l| l.strip_prefix("stored batch "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no batch name in:\n{}", run.stderr))
        .to_owned()
}

/// A JSON report (`result.json`, `summary.json`) of batch `name`.
fn report(state: &Path, name: &str, kind: &str) -> Value {
    let path = std::fs::read_dir(state.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let f = p.file_name().unwrap().to_string_lossy();
            f.starts_with(name) && f.ends_with(kind)
        })
        .unwrap_or_else(|| panic!("no {kind} report of {name}"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_batch_pays_and_unsigned_foreign_or_altered_ones_pay_nothing() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = write_config(
        dir.path(),
        &format!(
            "require_signature = true\nallowed_signers = \"{}\"\n",
            fixture("allowed_signers").display()
        ),
    );

    let good = batch(dir.path(), "good.csv", &[("sig-1", A, "5", ""), ("sig-2", B, "6", "")]);
    sign(&good, "alice", BATCH_NAMESPACE);
    let check = ccpayout(
        &api,
        &state,
        &config,
        &["check", good.to_str().unwrap(), "--sandbox", "--json"],
    );
    let json: Value =
        serde_json::from_str(&check.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", check.stdout, check.stderr));
    assert_eq!(json["signer"]["principal"], "alice", "{json}");
    let run = submit(&api, &state, &config, &good);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("signed by: alice"), "{}", run.stdout);
    let status = ccpayout(&api, &state, &config, &["status", &batch_name(&run)]);
    assert!(
        status.stdout.contains("signed by:   alice (ssh-ed25519 SHA256:"),
        "{}",
        status.stdout
    );
    assert_eq!(paid(&api), ids(&["sig-1", "sig-2"]));

    // Unsigned, signed by a key not in the list, signed in another namespace, and changed
    // after signing: each refused before any request, saying which.
    let unsigned = batch(dir.path(), "unsigned.csv", &[("uns-1", A, "5", "")]);
    let foreign = batch(dir.path(), "foreign.csv", &[("for-1", A, "5", "")]);
    sign(&foreign, "mallory", BATCH_NAMESPACE);
    let namespace = batch(dir.path(), "namespace.csv", &[("nsp-1", A, "5", "")]);
    sign(&namespace, "bob", "file");
    let altered = batch(dir.path(), "altered.csv", &[("alt-1", A, "5", "")]);
    sign(&altered, "alice", BATCH_NAMESPACE);
    std::fs::write(
        &altered,
        std::fs::read_to_string(&altered).unwrap().replace(",5,", ",500,"),
    )
    .unwrap();
    let attempts = api.sandbox.ledger().attempts.len();
    for (file, says) in [
        (&unsigned, "unsigned"),
        (&foreign, "is in no line of the allowed signers file"),
        (&namespace, "namespace \"file\""),
        (&altered, "changed after it was signed"),
    ] {
        let run = submit(&api, &state, &config, file);
        assert_eq!(run.code, Some(1), "{}: {}\n{}", file.display(), run.stdout, run.stderr);
        assert!(
            run.stderr.contains(says),
            "{} should say {says:?}:\n{}",
            file.display(),
            run.stderr
        );
    }
    assert_eq!(
        api.sandbox.ledger().attempts.len(),
        attempts,
        "no withdrawal was attempted for a refused file"
    );
    assert_eq!(paid(&api), ids(&["sig-1", "sig-2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvers_are_needed_one_counts_once_and_the_maker_cannot_approve() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = write_config(
        dir.path(),
        &format!(
            "approval = \"always\"\napprovals_required = 2\nmaker_may_approve = false\n\
             allowed_signers = \"{signers}\"\napprover_signers = \"{signers}\"\n",
            signers = fixture("allowed_signers").display()
        ),
    );
    let file = batch(
        dir.path(),
        "quorum.csv",
        &[("quo-1", A, "5", ""), ("quo-2", B, "7", "")],
    );
    sign(&file, "alice", BATCH_NAMESPACE);
    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("approval: required, 2 approver(s)"),
        "{}",
        run.stdout
    );
    let name = batch_name(&run);
    let digest = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("plan digest: "))
        .unwrap()
        .to_owned();
    let approve = |key: Option<&str>| {
        let mut args = vec!["approve", name.as_str(), "--digest", digest.as_str()];
        let key_path = key.map(fixture);
        if let Some(k) = &key_path {
            args.extend_from_slice(&["--sign-with", k.to_str().unwrap()]);
        }
        ccpayout(&api, &state, &config, &args)
    };

    // The maker (alice signed the file) may not approve it.
    let maker = approve(Some("alice"));
    assert_eq!(maker.code, Some(1), "{}{}", maker.stdout, maker.stderr);
    assert!(maker.stderr.contains("alice signed batch"), "{}", maker.stderr);
    // Another digest than the plan's is refused.
    let mut forged = vec!["approve", name.as_str(), "--digest"];
    let zero = "0".repeat(64);
    forged.push(&zero);
    let forged = ccpayout(&api, &state, &config, &forged);
    assert_eq!(forged.code, Some(1), "{}", forged.stderr);

    // The OS user approves once: 1 of 2; a second time it counts nothing.
    let first = approve(None);
    assert_eq!(first.code, Some(0), "{}{}", first.stdout, first.stderr);
    assert!(first.stdout.contains("1 of 2 approvals given"), "{}", first.stdout);
    let again = approve(None);
    assert_eq!(again.code, Some(1), "{}{}", again.stdout, again.stderr);
    assert!(again.stderr.contains("one approver counts once"), "{}", again.stderr);
    let status = ccpayout(&api, &state, &config, &["status", &name]);
    assert!(status.stdout.contains("1 of 2 given"), "{}", status.stdout);
    assert!(status.stdout.contains("1 more needed"), "{}", status.stdout);
    assert!(
        api.sandbox.ledger().attempts.is_empty(),
        "nothing sent before the quorum"
    );

    // Bob's signed approval is the second: the plan is released and pays once.
    let second = approve(Some("bob"));
    assert_eq!(second.code, Some(0), "{}{}", second.stdout, second.stderr);
    assert!(second.stdout.contains("2 orders released"), "{}", second.stdout);
    let status = ccpayout(&api, &state, &config, &["status", &name]);
    assert!(
        status.stdout.contains("bob [key SHA256:") && status.stdout.contains("[os user]"),
        "{}",
        status.stdout
    );
    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(paid(&api), ids(&["quo-1", "quo-2"]));
    let result = report(&state, &name, "result.json");
    let by: Vec<&str> = result["batch"]["approval"]["by"]
        .as_array()
        .unwrap_or_else(|| panic!("{result}"))
        .iter()
        .map(|g| g["by"].as_str().unwrap())
        .collect();
    assert_eq!(by.len(), 2, "{result}");
    assert_eq!(by[1], "bob");
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"control\":\"approval\",\"by\":\"bob\""), "{audit}");
    assert!(
        audit.contains("\"control\":\"signature_verified\",\"by\":\"alice\""),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_and_changed_destinations_wait_for_their_review_while_known_ones_pay() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The first batch, with holds off, makes A (emp-1) and B (emp-2) known.
    let open = write_config(dir.path(), "");
    let first = batch(
        dir.path(),
        "first.csv",
        &[("reg-1", A, "5", "emp-1"), ("reg-2", B, "5", "emp-2")],
    );
    let run = submit(&api, &state, &open, &first);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let registry = ccpayout(&api, &state, &open, &["recipients", "--format", "json"]);
    let json: Value = serde_json::from_str(&registry.stdout).unwrap();
    assert_eq!(json["recipients"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(json["payees"].as_array().unwrap().len(), 2, "{json}");

    // Now new destinations and changed payee addresses are held.
    let dir2 = tempfile::tempdir().unwrap();
    let held = write_config(
        dir2.path(),
        "new_recipients = \"hold\"\nchanged_payee_address = \"hold\"\n",
    );
    let second = batch(
        dir.path(),
        "second.csv",
        &[
            ("reg-3", A, "6", "emp-1"), // known
            ("reg-4", C, "6", ""),      // a new destination
            ("reg-5", C, "7", "emp-2"), // emp-2 was paid to B: changed
        ],
    );
    let check = ccpayout(
        &api,
        &state,
        &held,
        &["check", second.to_str().unwrap(), "--sandbox", "--json"],
    );
    let plan: Value =
        serde_json::from_str(&check.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", check.stdout, check.stderr));
    assert_eq!(plan["review"]["rows"], 2, "{plan}");
    assert_eq!(plan["review"]["new"], 1, "{plan}");
    assert_eq!(plan["review"]["changed"], 1, "{plan}");
    let rows = plan["rows"].as_array().unwrap();
    assert_eq!(rows[0]["registry"], "known");
    assert_eq!(rows[1]["verdict"], "review");
    assert_eq!(rows[2]["previous_destination"], format!("TRX {B}"));

    let run = submit(&api, &state, &held, &second);
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!("[was TRX {B} (payee emp-2)]")),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("wait for the recipient review"), "{}", run.stderr);
    assert_eq!(
        paid(&api),
        ids(&["reg-1", "reg-2", "reg-3"]),
        "the known destination paid"
    );
    let name = batch_name(&run);
    let status = ccpayout(&api, &state, &held, &["status", &name]);
    assert!(
        status
            .stdout
            .contains(&format!("to TRX {C}; payee emp-2 was paid to TRX {B} before")),
        "{}",
        status.stdout
    );
    let review_digest = plan["review"]["digest"].as_str().unwrap();
    // The plan's digest does not release the review part; its own digest does.
    let approve = ccpayout(&api, &state, &held, &["approve", &name, "--digest", review_digest]);
    assert_eq!(approve.code, Some(0), "{}{}", approve.stdout, approve.stderr);
    assert!(approve.stdout.contains("the recipient review"), "{}", approve.stdout);
    assert!(approve.stdout.contains("2 orders released"), "{}", approve.stdout);
    let run = submit(&api, &state, &held, &second);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(paid(&api), ids(&["reg-1", "reg-2", "reg-3", "reg-4", "reg-5"]));
    let registry = ccpayout(&api, &state, &held, &["recipients"]);
    assert!(
        registry.stdout.contains(&format!("emp-2  → TRX {C}"))
            && registry.stdout.contains(&format!("(before: TRX {B})")),
        "{}",
        registry.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_listed_row_is_refused_naming_the_list_while_the_rest_pays() {
    let api = TestApi::start_live(sandbox_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let list = dir.path().join("sanctioned.txt");
    std::fs::write(
        &list,
        format!("# test list\n0x0000000000000000000000000000000000000001\n{B}  # a label\n"),
    )
    .unwrap();
    let config = write_config(dir.path(), &format!("deny_lists = [\"{}\"]\n", list.display()));
    let file = batch(
        dir.path(),
        "deny.csv",
        &[("den-1", A, "5", ""), ("den-2", B, "5", ""), ("den-3", C, "5", "")],
    );

    let check = ccpayout(
        &api,
        &state,
        &config,
        &["check", file.to_str().unwrap(), "--sandbox", "--json"],
    );
    let plan: Value =
        serde_json::from_str(&check.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", check.stdout, check.stderr));
    assert_eq!(plan["deny_list_hits"][0]["order_id"], "den-2", "{plan}");
    assert_eq!(plan["deny_list_hits"][0]["list_line"], 3, "{plan}");

    let run = submit(&api, &state, &config, &file);
    assert_eq!(run.code, Some(1), "one row refused: {}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains(&format!("line 3 den-2: {B} is on {} line 3", list.display())),
        "{}",
        run.stdout
    );
    assert_eq!(paid(&api), ids(&["den-1", "den-3"]));
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"control\":\"deny_list_hit\""), "{audit}");

    // A list that cannot be read is a configuration error, never "no list".
    std::fs::remove_file(&list).unwrap();
    let other = batch(dir.path(), "other.csv", &[("den-4", A, "5", "")]);
    let run = submit(&api, &state, &config, &other);
    assert_eq!(run.code, Some(78), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("deny_lists"), "{}", run.stderr);
    assert_eq!(paid(&api), ids(&["den-1", "den-3"]));
}

#[test]
fn a_signed_approval_is_bound_to_the_batch_and_digest() {
    // What `approve --sign-with` signs, checked as the operator checks it.
    let signers = signature::AllowedSigners::parse(
        &std::fs::read_to_string(fixture("allowed_signers")).unwrap(),
        "allowed_signers",
    )
    .unwrap();
    let key = std::fs::read_to_string(fixture("bob")).unwrap();
    let message = signature::approval_message(&"ab".repeat(32), &"cd".repeat(32));
    let sig = signature::sign(&key, APPROVAL_NAMESPACE, &message).unwrap();
    let now = 1_800_000_000;
    assert_eq!(
        signature::verify(&signers, APPROVAL_NAMESPACE, &message, sig.as_bytes(), now)
            .unwrap()
            .principal,
        "bob"
    );
    let other = signature::approval_message(&"ab".repeat(32), &"ce".repeat(32));
    assert!(signature::verify(&signers, APPROVAL_NAMESPACE, &other, sig.as_bytes(), now).is_err());
    assert!(signature::verify(&signers, BATCH_NAMESPACE, &message, sig.as_bytes(), now).is_err());
}
