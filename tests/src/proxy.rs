//! A TCP proxy to cut and restore one link without touching either end.

/// A TCP proxy the test controls, to cut and restore a link (agent ↔ coordinator, agent ↔
/// broker) without touching either end.
pub struct Proxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    pub fn start(target: String) -> Proxy {
        Proxy::start_on(
            std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
            vec![target],
        )
    }

    /// A proxy on `l` that sends each connection to the first of `targets` accepting it: a
    /// stand-in for the load balancer in front of several coordinators.
    pub fn start_on(l: std::net::TcpListener, targets: Vec<String>) -> Proxy {
        use std::sync::atomic::Ordering;
        let port = l.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = Default::default();
        let (c2, k2) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for inbound in l.incoming() {
                let Ok(inbound) = inbound else { continue };
                if c2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let Some(outbound) = targets
                    .iter()
                    .find_map(|t| std::net::TcpStream::connect(t).ok())
                else {
                    continue;
                };
                k2.lock()
                    .unwrap()
                    .extend([inbound.try_clone().unwrap(), outbound.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, conns }
    }

    /// Drops every connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
