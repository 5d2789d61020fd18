//! Running programs, and the result every command of xtask returns. It depends on nothing
//! else in xtask, so every module can use it.

use std::process::{Command, Stdio};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub fn cmd(program: &str) -> Command {
    Command::new(program)
}

pub trait StatusOk {
    fn status_ok(&mut self) -> Result<()>;
}

impl StatusOk for Command {
    fn status_ok(&mut self) -> Result<()> {
        let status = self
            .status()
            .map_err(|e| format!("{:?}: {e}", self.get_program()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "{:?} {:?} failed: {status}",
                self.get_program(),
                self.get_args().collect::<Vec<_>>()
            )
            .into())
        }
    }
}

pub fn output_of(command: &mut Command) -> Option<String> {
    let out = command.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
