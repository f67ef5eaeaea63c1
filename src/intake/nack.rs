//! A schema or rule violation as the NACK a sender gets.

use crate::beckn::ack::Rejection;
use crate::beckn::schema::Violation;

/// The first of `violations` as a NACK naming its path (the body when it has none) and how
/// many more there were; Ok when there are none.
pub fn first_violation(violations: Vec<Violation>) -> Result<(), Rejection> {
    let Some(first) = violations.first() else {
        return Ok(());
    };
    let more = violations.len() - 1;
    let at = if first.path.is_empty() {
        "body".to_string()
    } else {
        first.path.clone()
    };
    Err(Rejection::Schema {
        path: first.path.clone(),
        message: if more > 0 {
            format!("{at}: {} (and {more} more)", first.message)
        } else {
            format!("{at}: {}", first.message)
        },
    })
}
