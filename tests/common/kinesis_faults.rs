//! An HTTP proxy in front of the Kinesis emulator that answers chosen `GetRecords` calls with a
//! Kinesis error instead of forwarding them: the emulator never throttles and its iterators
//! outlive a test, so this is how a test makes a consumer meet `ProvisionedThroughputExceeded`
//! and `ExpiredIterator` from the wire, through the real SDK.
//!
//! Each request is read whole (head and `Content-Length` body), then either answered here or
//! sent to the emulator on a connection of its own with `Connection: close`, and the answer is
//! copied back; the client's connection is then closed, so no request is ever half forwarded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Which error (a Kinesis error code) to answer the n-th `GetRecords` call with (counting
/// from 1), or `None` to forward it.
pub type Plan = dyn Fn(usize) -> Option<&'static str> + Send + Sync;

/// The running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`: the endpoint to give the consumer.
    pub endpoint: String,
    /// `GetRecords` calls seen so far.
    pub get_records: Arc<AtomicUsize>,
    /// Errors answered so far.
    pub injected: Arc<AtomicUsize>,
    acceptor: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl FaultProxy {
    /// Listens on a free port, forwarding to `upstream` (`host:port` of the emulator).
    pub async fn start(upstream: SocketAddr, plan: Box<Plan>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (get_records, injected) =
            (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let plan: Arc<Plan> = Arc::from(plan);
        let (seen, answered) = (get_records.clone(), injected.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (plan, seen, answered) = (plan.clone(), seen.clone(), answered.clone());
                tokio::spawn(async move {
                    let _ = serve(client, upstream, &*plan, &seen, &answered).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            get_records,
            injected,
            acceptor,
        }
    }
}

/// Reads one HTTP message's head (up to the blank line) and its `Content-Length` body.
async fn read_message(stream: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Ok(None);
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok(Some((head, body)))
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    plan: &Plan,
    seen: &AtomicUsize,
    answered: &AtomicUsize,
) -> std::io::Result<()> {
    let Some((head, body)) = read_message(&mut client).await? else {
        return Ok(());
    };
    let get_records = head.lines().any(|line| {
        line.to_ascii_lowercase().starts_with("x-amz-target:") && line.ends_with(".GetRecords")
    });
    if get_records {
        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(code) = plan(n) {
            answered.fetch_add(1, Ordering::SeqCst);
            let body = format!(r#"{{"__type":"{code}","message":"injected by the test proxy"}}"#);
            let response = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n\
                 x-amzn-ErrorType: {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(response.as_bytes()).await?;
            return client.shutdown().await;
        }
    }
    // Forward with `Connection: close`, so the emulator's answer ends with its connection.
    let head: String = head
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .filter(|line| !line.is_empty())
        .map(|line| format!("{line}\r\n"))
        .collect();
    let mut server = TcpStream::connect(upstream).await?;
    server
        .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .await?;
    server.write_all(&body).await?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).await?;
    client.write_all(&answer).await?;
    client.shutdown().await
}
