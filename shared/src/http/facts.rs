//! What a request learns on its way through the extractors (the caller, the matched route, the
//! rate window it counted in), kept in the request's extensions for the platform layer, which
//! writes it into the response headers, the log line and the metrics. A module of its own, so
//! that the extractors and the rate limits both write to it without importing each other.

use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Rule;

/// Where a limited request's current window is kept for the response headers.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub rule: Rule,
    pub remaining: u32,
    pub reset: u64,
}

/// Facts a request gathers on its way (who the caller is, which rate window it counted in),
/// which the platform layer writes into the response headers and the request's log line. A
/// std mutex is right here: it is never held across an await.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts(Arc<Mutex<Facts>>);

#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub user: Option<String>,
    pub route: Option<String>,
    pub window: Option<Window>,
}

impl RequestFacts {
    pub fn get(&self) -> Facts {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_user(&self, user: impl Into<String>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).user = Some(user.into());
    }

    pub fn set_route(&self, route: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).route = Some(route.to_owned());
    }

    pub fn set_window(&self, window: Window) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).window = Some(window);
    }
}
