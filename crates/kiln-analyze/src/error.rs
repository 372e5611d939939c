//! Why an analysis or a diff could not be made.

/// An analysis failure: a layer that cannot be read, a bad threshold or CI file.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// A layer failed to stream or did not match its digest.
    #[error("image {image}: {source}")]
    Walk {
        /// The image as named.
        image: String,
        /// The layer and reason.
        source: kiln_oci::walk::WalkError,
    },
    /// A threshold or `.dive-ci` value is malformed.
    #[error("{location}: {message} (hint: {hint})")]
    Config {
        /// `--flag` or `FILE:LINE:COL`.
        location: String,
        /// What is wrong.
        message: String,
        /// What to write instead.
        hint: String,
    },
    /// Reading the image failed.
    #[error("image {image}: {message}")]
    Image {
        /// The image as named.
        image: String,
        /// What failed.
        message: String,
        /// True when the input is at fault (exit 2), false for the environment (exit 3).
        input: bool,
    },
}

impl AnalyzeError {
    /// The exit code DESIGN.md assigns: 2 for bad input, 3 for the environment.
    pub fn exit_code(&self) -> u8 {
        match self {
            AnalyzeError::Walk { .. } | AnalyzeError::Config { .. } => 2,
            AnalyzeError::Image { input, .. } => {
                if *input {
                    2
                } else {
                    3
                }
            }
        }
    }
}
