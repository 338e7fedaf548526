//! The health-code domain of Tongban.
