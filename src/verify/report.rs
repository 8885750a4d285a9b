//! The report of `stsedge verify`: one [`Check`] per line (✓/✗ and one sentence), and
//! the verdict derived from them: discoverable (CNAME, TXT) and enforce-safe (HTTPS
//! policy, MX coverage, STARTTLS).
//!
//! Pure data and wording; nothing here touches the network.

use crate::domain::DomainName;

/// Which part of the verdict a check speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Senders find the policy (CNAMEs, TXT).
    Discovery,
    /// Senders in `enforce` mode deliver (HTTPS policy, MX coverage, STARTTLS).
    Enforce,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// One sentence.
    pub detail: String,
    pub stage: Stage,
}

impl Check {
    pub(super) fn new(
        name: impl Into<String>,
        stage: Stage,
        result: Result<String, String>,
    ) -> Check {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Check {
            name: name.into(),
            ok,
            detail,
            stage,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub domain: String,
    pub checks: Vec<Check>,
    pub discoverable: bool,
    pub enforce_safe: bool,
    pub verdict: String,
}

impl Report {
    pub(super) fn new(domain: &DomainName, checks: Vec<Check>) -> Report {
        let failing = |stage| -> Vec<&Check> {
            checks
                .iter()
                .filter(|c| c.stage == stage && !c.ok)
                .collect()
        };
        let (discovery, enforce) = (failing(Stage::Discovery), failing(Stage::Enforce));
        let reasons = |list: &[&Check]| {
            list.iter()
                .map(|c| format!("{} ({})", c.name, c.detail.trim_end_matches('.')))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut verdict = String::new();
        if enforce.is_empty() {
            verdict.push_str("enforce is safe");
            if !discovery.is_empty() {
                verdict = String::from(
                    "the HTTPS policy, MX coverage and STARTTLS pass, but the policy is not discoverable yet",
                );
            }
        } else {
            verdict = format!("enforce would bounce mail because {}", reasons(&enforce));
        }
        if !discovery.is_empty() {
            if !enforce.is_empty() {
                verdict.push_str("; also the policy is not discoverable yet");
            }
            verdict.push_str(&format!(" because {}", reasons(&discovery)));
        }
        Report {
            domain: domain.to_string(),
            discoverable: discovery.is_empty(),
            enforce_safe: enforce.is_empty(),
            verdict,
            checks,
        }
    }

    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// One line per check, then the verdict.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.ok { '✓' } else { '✗' };
            out.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
        }
        out.push_str(&format!("verdict: {}\n", self.verdict));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(stage: Stage, ok: bool) -> Check {
        Check::new(
            "x",
            stage,
            if ok {
                Ok("fine".into())
            } else {
                Err("bad".into())
            },
        )
    }

    #[test]
    fn the_verdict_separates_discovery_from_enforce_safety() {
        let d = DomainName::parse("example.com").unwrap();
        let safe = Report::new(
            &d,
            vec![check(Stage::Discovery, true), check(Stage::Enforce, true)],
        );
        assert_eq!(safe.verdict, "enforce is safe");
        assert!(safe.all_ok());
        let hidden = Report::new(
            &d,
            vec![check(Stage::Discovery, false), check(Stage::Enforce, true)],
        );
        assert!(
            hidden
                .verdict
                .contains("not discoverable yet because x (bad)"),
            "{}",
            hidden.verdict
        );
        assert!(!hidden.verdict.contains("enforce is safe"));
        let bounce = Report::new(
            &d,
            vec![check(Stage::Discovery, true), check(Stage::Enforce, false)],
        );
        assert!(
            bounce
                .verdict
                .starts_with("enforce would bounce mail because x (bad)")
        );
        assert!(!bounce.enforce_safe && bounce.discoverable);
    }
}
