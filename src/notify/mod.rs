//! Notifications: where the alert planner's messages go.

pub mod slack;
