//! The one operator: every command, once on the store directly (no daemon) and once through a
//! running daemon's control socket, on two identical copies of one state; the replies must be
//! the same — the same verdict, the same words — apart from what only a daemon can add (its
//! status lines, what happens after an approval), which comes as the reply's context.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ccpayout::app::{self, Ingested, Offline, Operator, Reply, Request, Verdict};
use ccpayout::config::Config;
use ccpayout::daemon::{self, Options, socket};
use ccpayout::sandbox::SandboxConfig;
use ccpayout::store::Store;
use ccpayout::util::clock;

use crate::helpers::TestApi;

fn config(dir: &Path, api: &TestApi) -> Config {
    let path = dir.join("ccpayout.toml");
    std::fs::write(
        &path,
        "[policy]\napproval = \"always\"\n\
         [limits]\nrate_per_second = 200\ntrack_first_check_secs = 1\ntrack_max_interval_secs = 2\n\
         [daemon]\ndrain_secs = 10\nmetrics_listen = \"\"\n",
    )
    .unwrap();
    let env: Vec<(String, String)> = api.env();
    Config::load(Some(&path), &|key| {
        env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    })
    .expect("the config loads")
}

/// Takes a batch of `n` rows into the store; it waits for approval.
async fn take_in(api: &TestApi, config: &Config, store: &Arc<Store>, dir: &Path, name: &str, n: usize) -> String {
    let mut text = String::from("order_id,recipient,coin,chain,amount\n");
    for i in 0..n {
        text.push_str(&format!(
            "{name}-{i:03},TFVq4F22oTuPf1Z3a27awyrKt3azrmep6K,USDT,TRX,2.5\n"
        ));
    }
    let file = dir.join(format!("{name}.csv"));
    std::fs::write(&file, text).unwrap();
    let client = app::wiring::paced_client(config, api.client.clone(), clock::system());
    match app::ingest(&client, config, store, &file, clock::system().now_ms()).await {
        Ok(Ingested::Created { batch, .. }) => batch.name,
        other => panic!("{name} was not stored: {other:?}"),
    }
}

fn copy_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Every request answered on the store in `offline_dir` directly, then through a daemon started
/// in process on `live_dir` (a copy of the same state), with a shutdown it is handed: the one
/// operator's replies from both back ends, in request order.
pub(crate) async fn both_ways(
    api: &TestApi,
    config: &Config,
    offline_dir: &Path,
    live_dir: &Path,
    requests: &[Request],
) -> (Vec<Reply>, Vec<Reply>) {
    let offline: Vec<Reply> = {
        let store = Arc::new(Store::open(offline_dir).unwrap());
        let operator = Operator::new(
            store,
            offline_dir.to_path_buf(),
            app::reports_dir(config, offline_dir),
            clock::system(),
            Offline,
        );
        let mut replies = Vec::new();
        for request in requests {
            replies.push(operator.handle(request.clone()).await);
        }
        replies
    };

    let store = Arc::new(Store::open(live_dir).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn({
        let (config, live_dir, client) = (config.clone(), live_dir.to_path_buf(), api.client.clone());
        async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            daemon::run(
                config,
                store,
                &live_dir,
                client,
                clock::system(),
                Options::default(),
                shutdown,
            )
            .await
        }
    });
    let mut live = Vec::new();
    for request in requests {
        let reply = loop {
            match socket::call(live_dir, request).await {
                Ok(Some(reply)) => break reply,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        live.push(reply);
    }
    let _ = stop.send(());
    daemon.await.unwrap().expect("the daemon stops cleanly");
    (offline, live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_command_answers_the_same_on_the_store_and_through_the_daemon() {
    let api = TestApi::start_live(SandboxConfig {
        settle_delay: Duration::from_millis(200),
        ..SandboxConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &api);
    // Two state folders of the same name length, so messages that name them line up.
    let (offline_dir, live_dir) = (dir.path().join("state-a"), dir.path().join("state-b"));
    let (first, second) = {
        let store = Arc::new(Store::open(&offline_dir).unwrap());
        let first = take_in(&api, &config, &store, dir.path(), "payroll", 3).await;
        let second = take_in(&api, &config, &store, dir.path(), "bonus", 2).await;
        (first, second)
    };
    copy_state(&offline_dir, &live_dir);
    let digest = {
        let store = Store::open(&offline_dir).unwrap();
        store.find_batch(&first).unwrap().unwrap().plan_digest
    };

    let requests = vec![
        Request::Status { target: None },
        Request::Status {
            target: Some(first.clone()),
        },
        Request::Status {
            target: Some("payroll-001".into()),
        },
        Request::Status {
            target: Some("no-such-thing".into()),
        },
        Request::Approve {
            batch: first.clone(),
            digest: "0000".into(),
            signature: None,
        },
        Request::Approve {
            batch: "no-such-batch".into(),
            digest: digest.clone(),
            signature: None,
        },
        Request::Pause {
            reason: Some("incident 42".into()),
        },
        Request::Status { target: None },
        Request::Resume,
        Request::Report { batch: first.clone() },
        Request::Cancel { batch: second.clone() },
        Request::Status {
            target: Some(second.clone()),
        },
        // Last: through the daemon an approval starts paying, which changes what follows.
        Request::Approve {
            batch: first.clone(),
            digest: digest.clone(),
            signature: None,
        },
    ];

    let (offline, live) = both_ways(&api, &config, &offline_dir, &live_dir, &requests).await;

    let same_place = |text: &str| text.replace(live_dir.to_str().unwrap(), offline_dir.to_str().unwrap());
    for ((request, offline), live) in requests.iter().zip(&offline).zip(&live) {
        assert_eq!(offline.verdict, live.verdict, "{request:?}:\n{offline:?}\n{live:?}");
        assert_eq!(offline.text, same_place(&live.text), "{request:?}");
    }
    // What each back end adds of its own.
    assert!(offline.iter().all(|r| !r.context.contains("daemon")));
    assert!(live[0].context.starts_with("daemon: up"), "{}", live[0].context);
    assert!(live[7].context.contains("sending held"), "{}", live[7].context);
    assert!(
        offline[12].context.contains("ccpayout submit"),
        "{}",
        offline[12].context
    );
    assert_eq!(live[12].context, "the daemon sends them now\n");
    // And the replies say what they did.
    let verdicts: Vec<Verdict> = offline.iter().map(|r| r.verdict).collect();
    use Verdict::{Done, Failed, Refused};
    assert_eq!(
        verdicts,
        [
            Done, Done, Done, Failed, Refused, Failed, Done, Done, Done, Done, Done, Done, Done
        ]
    );
    assert!(
        offline[7].text.contains("PAUSED by an operator: incident 42"),
        "{}",
        offline[7].text
    );
    assert!(
        offline[10].text.contains("cancelled 2 unsent orders"),
        "{}",
        offline[10].text
    );
    assert!(offline[12].text.contains("3 orders released"), "{}", offline[12].text);
}
