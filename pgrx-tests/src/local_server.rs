//! An axum app served on 127.0.0.1 from a thread of its own, stopped when dropped: the
//! Threads simulator and the feed's fault proxy run this way.

pub struct LocalServer {
    /// e.g. `http://127.0.0.1:40123`
    pub base_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalServer {
    /// Serves `app` on `port` (0: any free port) with `threads` runtime worker threads.
    pub fn start(
        app: axum::Router,
        port: u16,
        threads: usize,
        name: &str,
    ) -> std::io::Result<LocalServer> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads.max(1))
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                // Not a graceful shutdown: a hanging request must not keep the server up.
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    tokio::select! {
                        served = axum::serve(listener, app) => served.expect("serve"),
                        _ = rx => {}
                    }
                });
            })?;
        Ok(LocalServer {
            base_url,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Bounded: a server thread that does not stop is left behind, said, rather
            // than hanging the test that drops it (a panic here could abort).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                eprintln!(
                    "the server at {} did not stop within 30 s; left running",
                    self.base_url
                );
            }
        }
    }
}
