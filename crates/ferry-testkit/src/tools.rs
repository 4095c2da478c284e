//! Helper programs: bounded runs of `redis-cli` and the servers' own RDB
//! checkers.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Result, TestkitError, io_err};
use crate::flavor::Flavor;
use crate::server::terminate;

/// Runs `cmd` with stdout and stderr captured together, killing it after
/// `timeout`. Returns the output on exit status 0, else
/// [`TestkitError::CommandFailed`].
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let shown = format!("{cmd:?}");
    let mut out = tempfile::tempfile().map_err(io_err("creating an output file"))?;
    let err = out.try_clone().map_err(io_err("cloning an output file"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(io_err("cloning an output file"))?)
        .stderr(err)
        .spawn()
        .map_err(io_err(format!("spawning {shown}")))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err("waiting"))? {
            break Some(status);
        }
        if start.elapsed() > timeout {
            terminate(&mut child, Duration::ZERO);
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    out.seek(SeekFrom::Start(0))
        .and_then(|_| {
            let mut bytes = Vec::new();
            out.read_to_end(&mut bytes)?;
            text = String::from_utf8_lossy(&bytes).into_owned();
            Ok(())
        })
        .map_err(io_err("reading command output"))?;
    match status {
        Some(s) if s.success() => Ok(text),
        Some(s) => Err(TestkitError::CommandFailed {
            command: shown,
            status: s.to_string(),
            output: text,
        }),
        None => Err(TestkitError::CommandFailed {
            command: shown,
            status: format!("killed after the {:.0}s timeout", timeout.as_secs_f64()),
            output: text,
        }),
    }
}

/// Checks an RDB file with the flavor's own checker: the server binary run
/// under the name `redis-check-rdb` (`valkey-check-rdb` for Valkey), which
/// switches it into check mode. Returns the checker's output.
///
/// Module values cannot be checked this way (the checker loads no modules).
pub fn check_rdb(flavor: Flavor, rdb: &Path) -> Result<String> {
    let server = flavor.server_binary()?;
    let dir = tempfile::tempdir().map_err(io_err("creating a temp dir"))?;
    let name = match flavor {
        Flavor::Valkey9 => "valkey-check-rdb",
        _ => "redis-check-rdb",
    };
    let link = dir.path().join(name);
    std::os::unix::fs::symlink(&server, &link).map_err(io_err("symlinking the checker"))?;
    let mut cmd = Command::new(&link);
    cmd.arg(rdb);
    if let Some(lib) = flavor.library_path() {
        cmd.env("LD_LIBRARY_PATH", lib);
    }
    run_bounded(&mut cmd, Duration::from_secs(60))
}
