//! Argon2 on a few threads of its own, behind a bounded queue.
//!
//! Each Argon2id hash or check holds 19 MiB for the few dozen milliseconds it runs. On
//! tokio's blocking pool (up to 512 threads, each allocating from its own malloc arena,
//! which keeps what it was given), a burst of failed logins from anyone took the server to
//! gigabytes it never gave back. Here hashing holds at most its threads' share, and a burst
//! waits in the queue: a login is slower under attack, the server stays up.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() + Send>;

/// The threads that hash and check passwords.
#[derive(Debug)]
pub(crate) struct Hashers {
    jobs: mpsc::Sender<Job>,
}

impl Hashers {
    /// Starts `threads` hashing threads, with room for `queued` jobs waiting for one.
    pub(crate) fn start(threads: usize, queued: usize) -> Result<Self, String> {
        let (jobs, waiting) = mpsc::channel::<Job>(queued.max(1));
        let waiting = Arc::new(Mutex::new(waiting));
        for n in 0..threads.max(1) {
            let waiting = Arc::clone(&waiting);
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    loop {
                        // One thread waits for the next job; the others wait for the lock.
                        let next = waiting
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .blocking_recv();
                        match next {
                            Some(job) => job(),
                            // Every sender is gone: the server is stopping.
                            None => return,
                        }
                    }
                })
                .map_err(|e| format!("cannot start a hashing thread: {e}"))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `job` on a hashing thread, waiting for room in the queue; `None` if the
    /// hashing threads are gone or the job panicked.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(job());
        });
        self.jobs.send(job).await.ok()?;
        answer.await.ok()
    }
}
