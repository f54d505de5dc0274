//! A Debian rsyslog of the test's own on a loopback port, storing what it receives in a
//! file the test reads back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::services::program;

/// An rsyslogd the test started; killed when dropped.
pub struct Rsyslog {
    binary: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    /// Starts rsyslogd on a free loopback port; `None` (after a SKIPPED line) when rsyslog
    /// is not installed.
    pub fn start() -> Option<Self> {
        let binary = program("rsyslogd", "rsyslog")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.log");
        // No main queue (messages go to the file as they are read, so that a kill loses
        // only what was in the socket), room for big events, the parsed RFC 5424 fields
        // and the message on one line each.
        let config = format!(
            r#"global(workDirectory="{work}" maxMessageSize="256k")
main_queue(queue.type="direct")
module(load="imtcp")
template(name="fields" type="string" string="%syslogfacility% %syslogseverity% %hostname% %app-name% %msgid% %structured-data% %msg%\n")
ruleset(name="audit") {{
  action(type="omfile" file="{out}" template="fields")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="audit")
"#,
            work = dir.path().display(),
            out = out.display(),
        );
        std::fs::write(dir.path().join("rsyslog.conf"), config).unwrap();
        let mut rsyslog = Self {
            binary,
            dir,
            port,
            child: None,
        };
        rsyslog.run();
        Some(rsyslog)
    }

    /// Starts (again) on the same port and waits until it accepts connections.
    pub fn run(&mut self) {
        let config = self.dir.path().join("rsyslog.conf");
        let pid = self.dir.path().join("rsyslogd.pid");
        let _ = std::fs::remove_file(&pid);
        let child = Command::new(&self.binary)
            .args(["-n", "-f"])
            .arg(&config)
            .arg("-i")
            .arg(&pid)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it at once (SIGKILL): what it had not read is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The file it stores into.
    pub fn received(&self) -> PathBuf {
        self.dir.path().join("received.log")
    }

    /// The lines stored so far.
    pub fn lines(&self) -> Vec<String> {
        read_lines(&self.received())
    }

    /// Waits until `done` holds of the stored lines, at most `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslog holds {} lines after {within:?}",
                lines.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}
