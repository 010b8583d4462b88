//! Sets `AMRELAY_REVISION` for `amrelay_build_info` and `amrelay --version`: the git
//! commit the binary is built from, `AMRELAY_REVISION` from the environment when given
//! (a build from a source tarball), or "unknown" when neither is there.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=AMRELAY_REVISION");
    let revision = match std::env::var("AMRELAY_REVISION") {
        Ok(r) if !r.is_empty() => r,
        _ => {
            // Rebuild when HEAD moves: HEAD itself (a detached checkout), the branch it
            // names, and packed-refs (where a branch may live instead). Only files that
            // exist: cargo reruns a build script on every build for a missing one.
            if let (Some(git_dir), Some(common)) = (
                git(&["rev-parse", "--git-dir"]),
                git(&["rev-parse", "--git-common-dir"]),
            ) {
                let mut watch = vec![Path::new(&git_dir).join("HEAD")];
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watch.push(Path::new(&common).join(branch));
                }
                watch.push(Path::new(&common).join("packed-refs"));
                for p in watch.iter().filter(|p| p.exists()) {
                    println!("cargo:rerun-if-changed={}", p.display());
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=AMRELAY_REVISION={revision}");
}
