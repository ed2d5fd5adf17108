//! The control socket: how `status`, `approve`, `cancel`, `pause`, `resume` and `report` reach
//! a running daemon, which holds the state store (redb locks it to one process). The daemon
//! answers with the same one operator (`crate::app::operator`) the CLI uses on the store.
//!
//! The socket is `<state-dir>/control.sock`, mode 0600 (or 0660 with `daemon.socket_mode`), so
//! only the service's user (and its group) can steer payouts. The protocol is one JSON request
//! line and one JSON [`Reply`] line per connection: easy to read in a trace, nothing to
//! negotiate. When no daemon answers, the CLI works on the store directly.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::app::operator::{Operator, Runtime};
pub use crate::app::operator::{Reply, Request};

/// The socket's file name inside the state directory.
pub const SOCKET_FILE: &str = "control.sock";
/// Requests longer than this are refused (they are a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// How long a client waits for the daemon's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The socket path of a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

/// Sends `request` to the daemon of `state_dir`. `Ok(None)`: no daemon listens there (no socket,
/// or a stale one nobody accepts on), so the caller may use the store directly.
pub async fn call(state_dir: &Path, request: &Request) -> io::Result<Option<Reply>> {
    let path = socket_path(state_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot reach the daemon at {}: {e}", path.display()),
            ));
        }
    };
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
        line.push(b'\n');
        write.write_all(&line).await?;
        write.shutdown().await?;
        let mut answer = String::new();
        BufReader::new(read).read_line(&mut answer).await?;
        if answer.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the control socket without answering (is it stopping?)",
            ));
        }
        serde_json::from_str::<Reply>(&answer).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unreadable answer from the daemon: {e}"),
            )
        })
    };
    match tokio::time::timeout(CLIENT_TIMEOUT, exchange).await {
        Ok(reply) => reply.map(Some),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the daemon did not answer within {} s", CLIENT_TIMEOUT.as_secs()),
        )),
    }
}

/// Binds the control socket with `mode`. A socket file left by a daemon that died is replaced;
/// one that a live daemon answers on is an error (the store lock normally says so first).
pub async fn bind(state_dir: &Path, mode: u32) -> io::Result<UnixListener> {
    let path = socket_path(state_dir);
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another daemon answers on {}", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// Something that answers requests from a local user: the daemon's operator.
pub trait Handler: Send + Sync + 'static {
    /// `caller` is the OS user of the peer, from the socket's peer credentials: an approval
    /// is that user's, whatever the request says.
    fn handle(&self, request: Request, caller: &str) -> impl std::future::Future<Output = Reply> + Send;
}

impl<R: Runtime + 'static> Handler for Operator<R> {
    async fn handle(&self, request: Request, caller: &str) -> Reply {
        Operator::handle_from(self, request, caller).await
    }
}

/// Accepts connections until `cancel`, answering each with `handler`; removes the socket file at
/// the end.
pub async fn serve<H: Handler>(
    listener: UnixListener,
    path: PathBuf,
    handler: std::sync::Arc<H>,
    cancel: CancellationToken,
) -> io::Result<()> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = cancel.cancelled() => break,
        };
        let (stream, _) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            match answer(stream, handler.as_ref()).await {
                Ok(()) => {}
                // A client that connected and left without asking (a liveness probe).
                Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof) => {
                    tracing::debug!(error = %e, "control socket: client left")
                }
                Err(e) => tracing::warn!(error = %e, "control socket: a request failed"),
            }
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn answer<H: Handler>(stream: UnixStream, handler: &H) -> io::Result<()> {
    // Who is asking, as the kernel says (SO_PEERCRED): never taken from the request.
    let caller = stream.peer_cred().map(|cred| crate::util::user::name_of(cred.uid()))?;
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST_BYTES as u64);
    let reply = match tokio::time::timeout(Duration::from_secs(10), reader.read_until(b'\n', &mut line)).await {
        Err(_) => Reply::error("no request within 10 s"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(0)) => return Ok(()),
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Ok(request) => {
                tracing::info!(?request, caller = %caller, "control request");
                handler.handle(request, &caller).await
            }
            Err(e) => Reply::error(format!("not a control request: {e}")),
        },
    };
    let mut out = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

use tokio::io::AsyncReadExt as _;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Echo;

    impl Handler for Echo {
        async fn handle(&self, request: Request, caller: &str) -> Reply {
            Reply::ok(format!("{request:?} from {caller}"))
        }
    }

    #[tokio::test]
    async fn a_request_gets_its_reply_and_the_socket_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let listener = bind(dir.path(), 0o600).await.unwrap();
        let mode = std::fs::metadata(socket_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(listener, socket_path(dir.path()), Arc::new(Echo), cancel.clone()));
        let reply = call(
            dir.path(),
            &Request::Approve {
                batch: "b".into(),
                digest: "d".into(),
                signature: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(reply.verdict, crate::app::Verdict::Done);
        assert!(reply.text.contains("Approve"), "{}", reply.text);
        // The caller is the peer's OS user, from the kernel: this process's.
        assert!(
            reply.text.ends_with(&format!("from {}", crate::util::user::current())),
            "{}",
            reply.text
        );
        cancel.cancel();
        server.await.unwrap().unwrap();
        assert!(
            !socket_path(dir.path()).exists(),
            "the socket file is removed at the end"
        );
        // No daemon: the caller is told so, to use the store directly.
        assert_eq!(call(dir.path(), &Request::Resume).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stale_socket_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        drop(std::os::unix::net::UnixListener::bind(socket_path(dir.path())).unwrap());
        assert!(socket_path(dir.path()).exists());
        assert_eq!(
            call(dir.path(), &Request::Resume).await.unwrap(),
            None,
            "refused = no daemon"
        );
        let _listener = bind(dir.path(), 0o660).await.unwrap();
        let mode = std::fs::metadata(socket_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        // A second bind while one listens is refused.
        assert!(bind(dir.path(), 0o600).await.is_err());
    }

    #[test]
    fn requests_have_a_stable_wire_form() {
        let text = serde_json::to_string(&Request::Pause {
            reason: Some("incident".into()),
        })
        .unwrap();
        assert_eq!(text, r#"{"command":"pause","reason":"incident"}"#);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"command":"status","target":null}"#).unwrap(),
            Request::Status { target: None }
        );
    }
}
