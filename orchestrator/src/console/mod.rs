//! The operator console (docs/console.md): a page at `/console` whose assets are embedded in the
//! binary, so the orchestrator serves it with no web server and no build step.
//!
//! - [`assets`]: `/console` and `/console/assets/{file}` (public: the page holds no data; every
//!   call it makes carries the operator token the user signs in with).

pub mod assets;

pub use assets::router;
