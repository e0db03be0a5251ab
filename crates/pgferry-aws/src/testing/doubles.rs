//! The database sides of the Blue/Green path, scripted: green's checks and the
//! switchover's write probe.

use std::cell::{Cell, RefCell};

use pgferry::{Error, ErrorKind, Result};

use crate::blue_green::GreenSide;
use crate::check::{Finding, Severity};
use crate::switchover::WriteProbe;

/// Green's checks: records which instance was checked, answers one warning.
#[derive(Default)]
pub struct RecordingGreen {
    pub checked: RefCell<Vec<String>>,
    /// The next check fails (once), as if green were unreachable.
    pub fail: Cell<bool>,
}

impl GreenSide for RecordingGreen {
    async fn check(&self, green_instance: &str) -> Result<Vec<Finding>> {
        if self.fail.replace(false) {
            return Err(Error::new(ErrorKind::Connection, "scripted: green is unreachable"));
        }
        self.checked.borrow_mut().push(green_instance.to_owned());
        Ok(vec![Finding { severity: Severity::Warning, what: "database: scripted finding".into(), fix: None }])
    }
}

/// A probe whose writes fail from the `from`-th to the `to`-th (1-based), and commit otherwise.
pub struct ScriptedProbe {
    pub writes: Cell<usize>,
    pub failing: (usize, usize),
}

impl ScriptedProbe {
    pub fn failing(from: usize, to: usize) -> Self {
        ScriptedProbe { writes: Cell::new(0), failing: (from, to) }
    }
}

impl WriteProbe for ScriptedProbe {
    async fn write(&self) -> Result<()> {
        let n = self.writes.get() + 1;
        self.writes.set(n);
        tokio::task::yield_now().await;
        if (self.failing.0..=self.failing.1).contains(&n) {
            return Err(Error::new(ErrorKind::Connection, "scripted: read-only"));
        }
        Ok(())
    }
}
