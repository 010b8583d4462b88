//! A drill's report: the table of the drill report the seed shows (step, expected,
//! actual, elapsed, pass/fail), as Markdown or JSON. Stored with the drill, so that
//! `amrelay drill show` prints it again.

use serde::{Deserialize, Serialize};

/// The steps, in order; each also names its `amrelay_drill_step_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StepName {
    Inject,
    Receive,
    Guards,
    Verify,
    Tell,
    Resolve,
}

impl StepName {
    pub(crate) const ALL: [StepName; 6] = [
        StepName::Inject,
        StepName::Receive,
        StepName::Guards,
        StepName::Verify,
        StepName::Tell,
        StepName::Resolve,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StepName::Inject => "inject",
            StepName::Receive => "receive",
            StepName::Guards => "guards",
            StepName::Verify => "verify",
            StepName::Tell => "tell",
            StepName::Resolve => "resolve",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Result {
    Waiting,
    Running,
    Pass,
    Fail,
    /// Not run: an earlier step failed or stopped the drill.
    Skipped,
}

impl Result {
    fn as_str(self) -> &'static str {
        match self {
            Result::Waiting => "waiting",
            Result::Running => "running",
            Result::Pass => "pass",
            Result::Fail => "FAIL",
            Result::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Step {
    pub name: StepName,
    pub expected: String,
    pub actual: String,
    /// Seconds from the end of the step before (the drill's start for the first).
    pub elapsed_s: Option<f64>,
    pub budget_s: f64,
    pub result: Result,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Report {
    pub id: String,
    pub target: String,
    pub live: bool,
    pub surprise: bool,
    /// How the alert went in: the Alertmanagers' URLs, or this amrelay's webhook.
    pub via: Vec<String>,
    pub instance: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// None while it runs.
    pub passed: Option<bool>,
    /// One line: passed, which step failed, or why it stopped.
    pub verdict: String,
    pub steps: Vec<Step>,
    /// What to do next (after a live drill: fail back, reset).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<String>,
}

impl Report {
    /// The step's row: every report has one per step, in order.
    pub(crate) fn step(&mut self, name: StepName) -> &mut Step {
        &mut self.steps[name as usize]
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub(crate) fn from_json(s: &str) -> Option<Report> {
        serde_json::from_str(s).ok()
    }

    pub(crate) fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = format!(
            "# {}drill {} of {}\n\n{} · started {} by {} · via {}\n\n",
            match (self.live, self.surprise) {
                (true, _) => "LIVE ",
                (false, true) => "surprise ",
                _ => "",
            },
            self.id,
            self.target,
            self.verdict,
            self.started_at,
            self.instance,
            self.via.join(", ")
        );
        out.push_str("| Step | Expected | Actual | Elapsed | Budget | Result |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        for s in &self.steps {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} s | {} |\n",
                s.name.as_str(),
                cell(&s.expected),
                cell(&s.actual),
                s.elapsed_s.map_or("-".to_owned(), |e| format!("{e:.2} s")),
                s.budget_s,
                s.result.as_str()
            ));
        }
        if !self.next.is_empty() {
            out.push_str("\nNext:\n");
            for (i, n) in self.next.iter().enumerate() {
                out.push_str(&format!("{}. {n}\n", i + 1));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markdown_table_has_a_row_per_step_and_escapes_pipes() {
        let r = Report {
            id: "primary-1".into(),
            target: "primary".into(),
            live: false,
            surprise: false,
            via: vec!["webhook".into()],
            instance: "a".into(),
            started_at: "2026-12-04T10:00:00Z".into(),
            finished_at: None,
            passed: None,
            verdict: "running".into(),
            steps: StepName::ALL
                .iter()
                .map(|n| Step {
                    name: *n,
                    expected: "x | y".into(),
                    actual: String::new(),
                    elapsed_s: Some(1.5),
                    budget_s: 300.0,
                    result: Result::Pass,
                })
                .collect(),
            next: vec!["fail back".into()],
        };
        let md = r.markdown();
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| ")).count(),
            7,
            "{md}"
        );
        assert!(md.contains("x \\| y"), "{md}");
        assert!(md.contains("| 1.50 s | 300 s | pass |"), "{md}");
        assert!(md.contains("1. fail back"), "{md}");
        assert_eq!(Report::from_json(&r.to_json()), Some(r));
    }
}
