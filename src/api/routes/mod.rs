//! The routes, one file per resource. Each handler reads its HTTP input
//! (path, JSON body or form), calls the service layer, and returns the
//! service's typed result as JSON; errors become statuses in `error.rs`.
pub mod admin;
pub mod collections;
pub mod content;
pub mod documents;
pub mod embed;
pub mod search;
pub mod system;
pub mod ui;
