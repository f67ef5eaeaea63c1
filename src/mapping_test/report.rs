//! What a mapping test run found, and how it is printed: each difference with both sides and
//! the template line that wrote it.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

use crate::beckn::error::BecknError;
use crate::beckn::schema::Violation;
use crate::dry_run::fixtures::RecordedCall;
use crate::dry_run::input::InputError;
use crate::dry_run::json_path::{Mismatch, brief};
use crate::dry_run::origin::{ReplySource, SourceLine};

use super::format::ExpectedError;

/// Differences listed per test before the rest are counted only.
const MAX_SHOWN: usize = 20;
/// Longest value printed in a difference.
const MAX_VALUE: usize = 160;

/// The outcome of one test file.
pub struct TestResult {
    pub file: PathBuf,
    pub name: String,
    /// Empty when the test passed.
    pub problems: Vec<Problem>,
}

impl TestResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One way a test failed.
pub enum Problem {
    /// The test file, or a file it names, cannot be used.
    Setup(InputError),
    /// The provider would refuse the test's request.
    RequestRejected(Vec<Violation>),
    /// A step called a backend and the test gives no answer for it.
    MissingFixture(Box<RecordedCall>),
    /// A step called its backend unlike its fixture's `expect_request`.
    RequestDiffers {
        step: String,
        differences: Vec<Mismatch>,
    },
    /// The test's fixture has `expect_request` but its step was skipped (`when`).
    NoCall { step: String },
    /// The action failed where the test expects a result.
    Failed { detail: String, error: BecknError },
    /// The test expects an error and the action succeeded.
    NoError(ExpectedError),
    /// The callback carries another error than the expected one.
    WrongError {
        expected: ExpectedError,
        actual: BecknError,
        detail: Option<String>,
    },
    /// The callback breaks the core schema or the domain rules; each violation with the line
    /// that wrote the value, when known.
    CallbackInvalid {
        callback: &'static str,
        violations: Vec<(Violation, Option<SourceLine>)>,
    },
    /// `action: ultra`: the event makes no OMS order (the mapping failed, or the order breaks
    /// Ultra's rules), and the test expects one.
    OmsRefused {
        mapping_failed: bool,
        detail: String,
    },
    /// `action: ultra`: the mapping rendered null, and the test expects an order.
    OmsNothing,
    /// `action: ultra`: the test expects null, and the mapping made an order.
    OmsMade,
    /// `action: ultra`: the test expects a refusal, and the order passes.
    OmsAccepted { expected: String },
    /// `action: ultra`: refused, for another reason than the one expected.
    WrongRefusal { expected: String, actual: String },
    /// Values differ from `expect` or `expect_paths`.
    Differs {
        callback: &'static str,
        reply: Option<ReplySource>,
        differences: Vec<(Mismatch, Option<SourceLine>)>,
    },
}

/// Every test's outcome.
pub struct Report {
    pub results: Vec<TestResult>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            let verdict = if r.passed() { "PASS" } else { "FAIL" };
            writeln!(f, "{verdict} {}: {}", r.file.display(), r.name)?;
            for p in &r.problems {
                let mut text = String::new();
                write_problem(&mut text, p);
                for line in text.lines() {
                    writeln!(f, "  {line}")?;
                }
            }
        }
        writeln!(f)?;
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

fn write_problem(out: &mut String, p: &Problem) {
    match p {
        Problem::Setup(e) => {
            let _ = writeln!(out, "the test cannot run:");
            for line in e.to_string().lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        Problem::RequestRejected(v) => {
            let _ = writeln!(out, "the provider would NACK the test's request:");
            write_violations(out, v);
        }
        Problem::MissingFixture(call) => {
            let _ = writeln!(
                out,
                "step `{}` called {} {} {}, but the test has no fixture for it",
                call.step, call.backend, call.request.method, call.request.path
            );
            let _ = writeln!(
                out,
                "  hint: add `fixtures: {{ {}: {{ status: 200, body: ... }} }}`",
                call.step
            );
        }
        Problem::RequestDiffers { step, differences } => {
            let _ = writeln!(
                out,
                "step `{step}` called its backend unlike its `expect_request`:"
            );
            write_differences(out, differences.iter().map(|m| (m, None)));
        }
        Problem::NoCall { step } => {
            let _ = writeln!(
                out,
                "step `{step}` was skipped (its `when` is false), but the test's fixture has `expect_request`"
            );
        }
        Problem::Failed { detail, error } => {
            let _ = writeln!(out, "the action failed: {detail}");
            let _ = writeln!(
                out,
                "  the caller gets error {}: {}",
                error.code, error.message
            );
        }
        Problem::NoError(expected) => {
            let _ = writeln!(
                out,
                "expected error {}, but the action succeeded",
                expected_text(expected)
            );
        }
        Problem::WrongError {
            expected,
            actual,
            detail,
        } => {
            let _ = writeln!(out, "expected error {}", expected_text(expected));
            let _ = writeln!(out, "     got error {} {:?}", actual.code, actual.message);
            if let Some(d) = detail {
                let _ = writeln!(out, "  from: {d}");
            }
        }
        Problem::CallbackInvalid {
            callback,
            violations,
        } => {
            let _ = writeln!(
                out,
                "the {callback} breaks the outgoing checks (the provider would send a 31001 error instead):"
            );
            for (v, at) in violations {
                let path = if v.path.is_empty() { "body" } else { &v.path };
                let _ = writeln!(out, "  - {path}: {}", v.message);
                if let Some(at) = at {
                    let _ = writeln!(out, "    written at {at}");
                }
            }
        }
        Problem::OmsRefused {
            mapping_failed,
            detail,
        } => {
            let what = if *mapping_failed {
                "the ultra mapping failed"
            } else {
                "Ultra's rules refuse the OMS order"
            };
            let _ = writeln!(out, "{what} (nothing would be sent): {detail}");
        }
        Problem::OmsNothing => {
            let _ = writeln!(
                out,
                "the ultra mapping rendered null: nothing would be sent to Ultra"
            );
            let _ = writeln!(
                out,
                "  hint: `expect: {{ nothing: true }}` if that is right"
            );
        }
        Problem::OmsMade => {
            let _ = writeln!(
                out,
                "expected null (nothing sent), but the ultra mapping made an OMS order"
            );
        }
        Problem::OmsAccepted { expected } => {
            let _ = writeln!(
                out,
                "expected a refusal containing {expected:?}, but the OMS order passes Ultra's rules"
            );
        }
        Problem::WrongRefusal { expected, actual } => {
            let _ = writeln!(out, "expected a refusal containing {expected:?}");
            let _ = writeln!(out, "     got: {actual}");
        }
        Problem::Differs {
            callback,
            reply,
            differences,
        } => {
            match reply {
                Some(r) => {
                    let _ = writeln!(out, "{callback} differs from the expectation ({r}):");
                }
                None => {
                    let _ = writeln!(out, "{callback} differs from the expectation:");
                }
            }
            write_differences(out, differences.iter().map(|(m, at)| (m, at.as_ref())));
        }
    }
}

fn expected_text(e: &ExpectedError) -> String {
    match &e.message {
        Some(m) => format!("{} {m:?}", e.code),
        None => e.code.clone(),
    }
}

fn write_violations(out: &mut String, violations: &[Violation]) {
    for v in violations {
        let at = if v.path.is_empty() { "body" } else { &v.path };
        let _ = writeln!(out, "  - {at}: {}", v.message);
    }
}

fn write_differences<'a>(
    out: &mut String,
    differences: impl ExactSizeIterator<Item = (&'a Mismatch, Option<&'a SourceLine>)>,
) {
    let total = differences.len();
    for (m, at) in differences.take(MAX_SHOWN) {
        let _ = writeln!(out, "  {}", m.path);
        let _ = writeln!(
            out,
            "    expected: {}",
            brief(m.expected.as_ref(), MAX_VALUE)
        );
        let _ = writeln!(out, "    actual:   {}", brief(m.actual.as_ref(), MAX_VALUE));
        if let Some(at) = at {
            let _ = writeln!(out, "    written at {at}");
        }
    }
    if total > MAX_SHOWN {
        let _ = writeln!(out, "  ... and {} more", total - MAX_SHOWN);
    }
}
