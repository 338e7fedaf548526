//! The seven GB/T 38963 operations (in progress).
