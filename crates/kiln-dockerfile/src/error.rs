//! Parse errors with a location and a hint, rendered like compiler errors.

/// A Dockerfile syntax error.
///
/// `line`/`col` are 1-based; `col` counts characters (not bytes) in the
/// source line, so editors and the rendered caret agree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}:{col}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column in characters.
    pub col: usize,
    /// What is wrong, in BuildKit's words where it has some.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
}

impl ParseError {
    pub(crate) fn new(line: usize, col: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            col,
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Render for a terminal:
    ///
    /// ```text
    /// Dockerfile:3:6: unknown flag: form
    ///   3 | COPY --form=build /a /b
    ///     |      ^
    /// hint: did you mean `--from`?
    /// ```
    ///
    /// The first line alone is a complete error (for logs and `--format`
    /// outputs that keep one line per error).
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let mut out = format!("{}:{}:{}: {}\n", file_name, self.line, self.col, self.message);
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        if let Some(text) = source.split('\n').nth(self.line.wrapping_sub(1)) {
            let text = text.strip_suffix('\r').unwrap_or(text);
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            out.push_str(&format!("  {num} | {text}\n"));
            // Keep tabs so the caret lines up whatever the tab width is.
            let lead: String = text
                .chars()
                .take(self.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("  {pad} | {lead}^\n"));
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("hint: {h}\n"));
        }
        out
    }
}
