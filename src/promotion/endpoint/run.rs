//! Runs the promotion command: argv without a shell, the incident in its environment,
//! killed with its whole process group after the timeout, the tails of its output kept.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::state::Finish;

/// How much of the end of stdout and of stderr is kept with the result.
pub(crate) const TAIL_BYTES: usize = 4096;

/// After the command exits, how long its output may take to reach the end: a daemon it
/// started in the background may hold the pipes open for ever.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// The finished run, how long it took, and whether it was killed for taking too long.
pub(crate) struct Ran {
    pub finish: Finish,
    pub duration: Duration,
    pub timed_out: bool,
}

/// Runs `argv` with `env` added to amrelay's environment. Never fails: a command that
/// cannot start, is killed by a signal or times out is a failed run with an `error`.
/// `spawned` gets the command's process group as soon as it runs, to be recorded: a
/// group that outlives amrelay (a crash mid-run) must end before another run starts.
pub(crate) async fn run(
    argv: &[String],
    env: &[(&str, String)],
    timeout: Duration,
    spawned: impl FnOnce(Group),
) -> Ran {
    let started = Instant::now();
    let (finish, timed_out) = run_inner(argv, env, timeout, spawned).await;
    Ran {
        finish,
        duration: started.elapsed(),
        timed_out,
    }
}

async fn run_inner(
    argv: &[String],
    env: &[(&str, String)],
    timeout: Duration,
    spawned: impl FnOnce(Group),
) -> (Finish, bool) {
    let failed = |error: String| {
        let f = Finish {
            exit_code: None,
            error: Some(error),
            stdout_tail: String::new(),
            stderr_tail: String::new(),
        };
        (f, false)
    };
    let Some((program, args)) = argv.split_first() else {
        return failed("no command configured".into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        // An env value cannot hold NUL; the reason comes from the network.
        .envs(env.iter().map(|(k, v)| (*k, v.replace('\0', ""))))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills what it started too, and a
        // Ctrl-C meant for amrelay does not reach it.
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start {program:?}: {e}")),
    };
    let pid = child.id();
    if let Some(g) = pid.and_then(Group::of) {
        spawned(g);
    }
    let out = Tail::default();
    let err = Tail::default();
    let readers = [
        tokio::spawn(out.clone().fill(child.stdout.take())),
        tokio::spawn(err.clone().fill(child.stderr.take())),
    ];
    let mut timed_out = false;
    let (exit_code, error) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => (Some(code), None),
            (None, Some(sig)) => (None, Some(format!("killed by signal {sig}"))),
            (None, None) => (None, Some(format!("ended with {status}"))),
        },
        Ok(Err(e)) => (None, Some(format!("cannot wait for the command: {e}"))),
        Err(_) => {
            if let Some(pid) = pid {
                kill_group(pid);
            }
            let _ = child.kill().await;
            timed_out = true;
            (
                None,
                Some(format!(
                    "timed out after {}; killed",
                    humantime::format_duration(timeout)
                )),
            )
        }
    };
    let _ = tokio::time::timeout(DRAIN_GRACE, async {
        for r in readers {
            let _ = r.await;
        }
    })
    .await;
    let finish = Finish {
        exit_code,
        error,
        stdout_tail: out.text(),
        stderr_tail: err.text(),
    };
    (finish, timed_out)
}

/// A run's process group, known again after a restart by its leader's start time (a
/// pid is reused; a pid with the same start time is the same process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Group {
    pub(crate) pgid: i32,
    /// The leader's start time, in clock ticks after boot (`/proc/<pid>/stat`, field 22).
    pub(crate) started: u64,
}

impl Group {
    /// The group the command leads (it was started with `process_group(0)`).
    fn of(pid: u32) -> Option<Group> {
        let pgid = i32::try_from(pid).ok()?;
        Some(Group {
            pgid,
            started: stat(pgid)?.started,
        })
    }

    /// Whether any process of the group still runs (a zombie does not: in a container
    /// nobody may ever reap it). When its leader is still there it must be the same
    /// process (same start time); when only the leader has gone, the rest still counts.
    pub(crate) fn alive(&self) -> bool {
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return false;
        };
        let mut member = false;
        for entry in procs.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Some(p) = stat(pid) else { continue };
            if p.pgrp != self.pgid {
                continue;
            }
            if pid == self.pgid && p.started != self.started {
                // The id is another group's now.
                return false;
            }
            member |= !matches!(p.state, 'Z' | 'X');
        }
        member
    }
}

/// What `/proc/<pid>/stat` says of a process.
struct Stat {
    state: char,
    pgrp: i32,
    /// Field 22: when it started, in clock ticks after boot.
    started: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its end.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
}

/// SIGKILL to the command's process group (its pid: it was started with
/// `process_group(0)`, and it has not been reaped yet, so the id is still its own).
fn kill_group(pid: u32) {
    let Ok(pgid) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let r = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if r != 0 {
        tracing::warn!(pid, error = %std::io::Error::last_os_error(), "cannot kill the promotion command's process group");
    }
}

/// The last `TAIL_BYTES` of a stream, shared so that a reader that never ends can be
/// abandoned with what it read so far.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<Vec<u8>>>);

impl Tail {
    async fn fill(self, stream: Option<impl AsyncRead + Unpin>) {
        let Some(mut stream) = stream else { return };
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > TAIL_BYTES {
                let cut = buf.len() - TAIL_BYTES;
                buf.drain(..cut);
            }
        }
    }

    fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // The cut may split a character: lossy decoding replaces the piece.
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// What a dry run checks of the command without running it: the program exists, is a
/// file, and this process may execute it (found on `PATH` when it has no `/`).
pub(crate) fn check_executable(argv: &[String]) -> Result<PathBuf, String> {
    let Some(program) = argv.first() else {
        return Err("no command configured".into());
    };
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    };
    let mut why = format!("{program:?} is not on PATH");
    for path in candidates {
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {
                let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                    .map_err(|_| format!("{program:?} holds a NUL byte"))?;
                // SAFETY: access reads the NUL-terminated path it is given, nothing else.
                if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
                    return Ok(path);
                }
                why = format!("{} is not executable by this process", path.display());
            }
            Ok(_) => why = format!("{} is not a file", path.display()),
            Err(e) if program.contains('/') => why = format!("{}: {e}", path.display()),
            Err(_) => {}
        }
    }
    Err(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn a_group_is_alive_while_any_of_it_runs_and_not_after() {
        let (tx, rx) = std::sync::mpsc::channel();
        // The leader exits at once; the child it leaves in the group sleeps on (its
        // output elsewhere, so that reading the command's output does not wait for it).
        let r = run(
            &sh("sleep 2 >/dev/null 2>&1 & echo started"),
            &[],
            Duration::from_secs(10),
            move |g| tx.send(g).unwrap(),
        )
        .await;
        assert_eq!(r.finish.exit_code, Some(0));
        let g = rx.recv().unwrap();
        assert!(g.alive(), "the leader's child still runs in the group");
        let gone = std::time::Instant::now();
        while g.alive() {
            assert!(
                gone.elapsed() < Duration::from_secs(10),
                "group never ended"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A group id with another leader start time is another group.
        let other = Group {
            pgid: std::process::id() as i32,
            started: 1,
        };
        assert!(!other.alive());
    }

    #[tokio::test]
    async fn exit_codes_output_and_environment_come_back() {
        let env = [("AMRELAY_EPOCH", "7".to_owned())];
        let r = run(
            &sh("echo out $AMRELAY_EPOCH; echo err >&2; exit 75"),
            &env,
            Duration::from_secs(10),
            |_| {},
        )
        .await;
        assert_eq!(r.finish.exit_code, Some(75));
        assert_eq!(r.finish.error, None);
        assert_eq!(r.finish.stdout_tail, "out 7\n");
        assert_eq!(r.finish.stderr_tail, "err\n");
    }

    #[tokio::test]
    async fn only_the_tail_of_a_long_output_is_kept() {
        let r = run(
            &sh("i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done; echo last"),
            &[],
            Duration::from_secs(10),
            |_| {},
        )
        .await;
        let tail = r.finish.stdout_tail;
        assert!(tail.len() <= TAIL_BYTES, "{}", tail.len());
        assert!(tail.ends_with("line-1999\nlast\n"), "{tail}");
        assert!(!tail.contains("line-1\n"));
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!(
            "sleep 30 & echo $! > {}; echo started; wait",
            pidfile.display()
        );
        let r = run(&sh(&script), &[], Duration::from_millis(500), |_| {}).await;
        assert!(r.timed_out);
        assert_eq!(r.finish.exit_code, None);
        assert!(
            r.finish.error.as_deref().unwrap().contains("timed out"),
            "{:?}",
            r.finish.error
        );
        assert_eq!(r.finish.stdout_tail, "started\n");
        assert!(r.duration < Duration::from_secs(10));
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        assert!(gone(pid.trim()), "the background sleep {pid} survived");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failed_run_that_names_it() {
        let r = run(
            &["/nonexistent/promote".to_owned()],
            &[],
            Duration::from_secs(1),
            |_| {},
        )
        .await;
        assert!(!r.timed_out);
        assert_eq!(r.finish.exit_code, None);
        assert!(r.finish.error.unwrap().contains("/nonexistent/promote"));
    }

    /// Gone, or a zombie waiting for a parent that does not reap (PID 1 in a container).
    fn gone(pid: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(s)
                    if s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z')) =>
                {
                    return true
                }
                Ok(_) if Instant::now() > deadline => return false,
                Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
