//! A TCP proxy on loopback that reproduces half-open connections: it
//! forwards every new connection to its target, and on command freezes
//! every connection it already has. A frozen connection holds its bytes and
//! closes nothing, on either side: to its client it looks exactly like a
//! server whose host restarted, or a NAT or load balancer that forgot the
//! connection, when no reset reaches the client (the socket stays
//! established, and no reply ever comes). Connections made after a freeze
//! pass, as they would to a server that came back.

use std::net::SocketAddr;

use tokio::{
    io::copy,
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_util::sync::{CancellationToken, DropGuard};

/// A proxy to one target; stops (closing every connection) when dropped.
pub struct FreezingProxy {
    addr: SocketAddr,
    /// How many freezes there have been: a connection opened before the
    /// latest one is frozen.
    freezes: watch::Sender<u64>,
    _stop: DropGuard,
}

impl FreezingProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let (freezes, _) = watch::channel(0);
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, target, freezes.subscribe(), stop.clone()));
        Self {
            addr,
            freezes,
            _stop: stop.drop_guard(),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Freezes every connection open now; new ones still pass.
    pub fn freeze(&self) {
        self.freezes.send_modify(|n| *n += 1);
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    freezes: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
        };
        let epoch = *freezes.borrow();
        tokio::spawn(relay(client, target, freezes.clone(), epoch, stop.clone()));
    }
}

/// Forwards one connection both ways until either side closes it, or
/// until a freeze after `epoch`: then it stops moving bytes and keeps both
/// sockets open until the proxy stops.
async fn relay(
    client: TcpStream,
    target: SocketAddr,
    mut freezes: watch::Receiver<u64>,
    epoch: u64,
    stop: CancellationToken,
) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let forward = async {
        tokio::join!(
            copy(&mut client_read, &mut server_write),
            copy(&mut server_read, &mut client_write),
        )
    };
    let frozen = async {
        // The guard it returns must not live across the wait below.
        let _ = freezes.wait_for(|&n| n > epoch).await;
    };
    tokio::select! {
        _ = forward => {}
        () = frozen => stop.cancelled().await,
        _ = stop.cancelled() => {}
    }
}
