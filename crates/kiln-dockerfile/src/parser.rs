//! The Dockerfile parser (stub; full implementation follows).

use crate::ast::*;
use crate::error::ParseError;

/// Parse Dockerfile source text.
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    let _ = source;
    Ok(Dockerfile {
        directives: Directives::default(),
        instructions: Vec::new(),
    })
}
