//! Command handling on the event store (in progress).
