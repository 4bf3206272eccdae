//! A TCP proxy in front of a broker or a database, which a test can cut off and restore:
//! clients see connections refused and dropped, like a server that went down, while the server
//! process (with its in-memory data) lives on. It can also freeze: connections stay open but
//! nothing passes, like a network partition where neither side notices at once.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub struct Proxy {
    pub listen: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// Starts forwarding `listen` → `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Proxy {
        let mut proxy = Proxy {
            listen,
            upstream,
            tasks: Arc::default(),
            acceptor: None,
            frozen: tokio::sync::watch::channel(false).0,
        };
        proxy.restore().await;
        proxy
    }

    /// Closes the listening socket and every open connection.
    pub async fn cut(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.abort();
            let _ = acceptor.await;
        }
        for task in self.tasks.lock().await.drain(..) {
            task.abort();
        }
    }

    /// Stops forwarding without closing anything: both sides wait, as in a partition.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Forwards again what waited.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Listens and forwards again.
    pub async fn restore(&mut self) {
        let listener = bind_retrying(self.listen).await;
        let upstream = self.upstream;
        let tasks = self.tasks.clone();
        let frozen = self.frozen.subscribe();
        self.acceptor = Some(tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let frozen = frozen.clone();
                let task = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, frozen).await;
                    }
                });
                tasks.lock().await.push(task);
            }
        }));
    }
}

/// Copies both ways until either side closes; while `frozen`, reads nothing.
async fn forward(
    client: TcpStream,
    server: TcpStream,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    loop {
        if *frozen.borrow_and_update() {
            if frozen.changed().await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            read = client_read.read(&mut up) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if server_write.write_all(&up[..n]).await.is_err() { return },
            },
            read = server_read.read(&mut down) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if client_write.write_all(&down[..n]).await.is_err() { return },
            },
            changed = frozen.changed() => if changed.is_err() { return },
        }
    }
}

async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("could not bind the proxy on {addr}");
}

/// A proxy in front of the test database (`PROCON_TEST_DATABASE_URL`'s host and port), and
/// `url` rewritten to reach the database through it.
pub async fn database_proxy(url: &str) -> (Proxy, String) {
    let base = super::db::base_url();
    let upstream = base
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port in PROCON_TEST_DATABASE_URL")
        .to_owned();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let target = tokio::net::lookup_host(&upstream)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(listen, target).await;
    (proxy, url.replacen(&upstream, &listen.to_string(), 1))
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker process of the calling test's own, reachable only through a [`Proxy`] the test can
/// cut: clients (which learn the proxy's address from the broker's metadata) see the broker
/// go down and come back, while its in-memory data lives on.
pub struct PrivateBroker {
    /// The bootstrap address clients use (the proxy's).
    pub brokers: String,
    pub proxy: Proxy,
    process: std::process::Child,
}

impl PrivateBroker {
    pub async fn start() -> PrivateBroker {
        let broker_port = free_port();
        let proxy_port = free_port();
        let process = std::process::Command::new(super::broker::tansu_bin())
            .args(["broker", "--listener-url"])
            .arg(format!("tcp://127.0.0.1:{broker_port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{proxy_port}"))
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn tansu");
        let upstream: SocketAddr = format!("127.0.0.1:{broker_port}").parse().unwrap();
        super::wait_for(
            "the private broker to listen",
            std::time::Duration::from_secs(60),
            || std::net::TcpStream::connect(upstream).ok(),
        );
        let listen: SocketAddr = format!("127.0.0.1:{proxy_port}").parse().unwrap();
        PrivateBroker {
            brokers: listen.to_string(),
            proxy: Proxy::start(listen, upstream).await,
            process,
        }
    }

    /// Cuts the proxy and ends the broker process.
    pub async fn stop(mut self) {
        self.proxy.cut().await;
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
