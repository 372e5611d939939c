//! Dockerfile parsing for kiln.
//!
//! * [`parse`] turns Dockerfile text (BuildKit `docker/dockerfile:1` syntax:
//!   parser directives, continuations, heredocs, JSON and shell forms) into a
//!   located, raw [`Dockerfile`] tree, or a [`ParseError`] with a hint.
//! * [`expand`] is BuildKit's shell-word processor (`$VAR`, `${VAR:-x}`,
//!   quotes, word splitting) that the build frontend applies to raw words.
//! * [`dockerignore`] implements Docker's `.dockerignore` matching.
//!
//! Nothing here does I/O except [`dockerignore::ignore_file_for`].

#![warn(missing_docs)]

pub mod ast;
pub mod dockerignore;
mod error;
pub mod expand;
mod parser;

pub use ast::*;
pub use error::ParseError;
pub use parser::parse;
